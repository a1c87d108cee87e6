"""PERF_TRAMPOLINE=standby (how 3.9-3.13 are attached to, and a 3.14+ process that disables
remote debugging) on real perf and real interpreters: record -p through its trigger, a
directory others can write refused, a forked child reached, a dead process's FIFO swept."""

import os
import stat
import subprocess
import time

import pytest
from test_attach import REMOTE, STANDBY, TARGET, chain_share, outcome, start
from test_cli import clean_env, cli

# TARGET's work in a worker thread while the main thread sleeps in one long system call (so
# only a trigger that needs no main thread can reach it), after the program took every signal
# it can for itself; it says first whether SIGUSR1/SIGUSR2 were still the default ones.
STANDBY_TARGET = TARGET.replace("print(os.getpid(), flush=True)", r'''
import signal
usr_default = all(signal.getsignal(s) == signal.SIG_DFL for s in (signal.SIGUSR1, signal.SIGUSR2))
for s in signal.valid_signals():
    if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGINT):
        signal.signal(s, lambda *a: None)
print(os.getpid(), flush=True)
print("usr_default", usr_default, flush=True)
worker = threading.Thread(target=work)
worker.start()
time.sleep(seconds + 1)
worker.join()
work = lambda: None
''')


@pytest.mark.parametrize("py", STANDBY)
def test_record_pid_with_standby(py, work, targets):
    target = start(targets, py, work, seconds=9, program=STANDBY_TARGET, venv=True,
                   env={"PERF_TRAMPOLINE": "standby"})
    assert target.proc.stdout.readline().split() == [b"usr_default", b"True"]
    time.sleep(0.5)
    status, out, err = cli(py, ["record", "-p", str(target.pid), "--duration", "3", "-o", str(work / "x.svg")], work)
    assert status == 0, err
    assert "frames already running when support came on have no trampoline" in out
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    status, out, err = target.finish()
    assert status == 0, err
    result = outcome(out)
    assert result["wrong"] == 0 and result["calls"] > 0 and result["active"] == "False"
    assert not os.path.exists("/tmp/perf-trampoline-standby-%d/%d" % (os.geteuid(), target.pid))


def record_briefly_and_finish(py, work, target):
    """record -p for 2 s: the chain in at least 90% of the samples; then the target ends
    normally with every result right."""
    time.sleep(0.5)
    status, _, err = cli(py, ["record", "-p", str(target.pid), "--duration", "2", "-o", str(work / "x.svg")], work)
    assert status == 0, err
    assert chain_share(work / "x.folded") >= 0.9
    status, out, err = target.finish()
    assert status == 0 and outcome(out)["wrong"] == 0, err


@pytest.mark.parametrize("py", REMOTE)
def test_standby_serves_a_314_process_that_disables_remote_debugging(py, work, targets):
    target = start(targets, py, work, seconds=8, venv=True,
                   env={"PERF_TRAMPOLINE": "standby", "PYTHON_DISABLE_REMOTE_DEBUG": "1"})
    record_briefly_and_finish(py, work, target)


@pytest.mark.parametrize("py", STANDBY[-1:])
def test_standby_refuses_a_directory_others_can_write(py, work, targets):
    """The standby directory of user 65533 made beforehand by root, writable by all: that
    user's process must not put its trigger there (one line; it runs on without standby)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    directory = "/tmp/perf-trampoline-standby-65533"
    if os.path.lexists(directory):
        pytest.skip("%s exists already" % directory)
    os.mkdir(directory)
    os.chmod(directory, 0o777)
    try:
        proc = subprocess.Popen(py.wrap + ["setpriv", "--reuid=65533", "--regid=65533", "--clear-groups"] + py.python
                                + ["-c", TARGET, "2", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                                env=clean_env({"PERF_TRAMPOLINE": "standby"}))
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0 and outcome(out.decode().split("\n", 1)[1])["wrong"] == 0
        assert err.decode().strip() == ("perf_trampoline: PERF_TRAMPOLINE=standby: %s belongs to uid 0, not to us "
                                        "(running without standby)" % directory)
        assert os.listdir(directory) == []
    finally:
        os.rmdir(directory)


@pytest.mark.parametrize("py", STANDBY[-1:])
def test_standby_reaches_a_forked_child(py, work, targets):
    """A pre-fork server's worker has no thread of its parent's: it starts its own trigger."""
    program = TARGET.replace("print(os.getpid(), flush=True)",
                             "child = os.fork()\nif child:\n    print(child, flush=True)\n    os.waitpid(child, 0)\n"
                             "    os._exit(0)")
    target = start(targets, py, work, seconds=8, program=program, venv=True, env={"PERF_TRAMPOLINE": "standby"})
    record_briefly_and_finish(py, work, target)


@pytest.mark.parametrize("py", REMOTE[:1])
def test_a_dead_processs_standby_fifo_is_ignored_and_swept(py, work, targets):
    """A killed standby process leaves its FIFO; a later process with its pid attaches as if
    it were not there, and the next process armed with standby removes it."""
    target = start(targets, py, work, seconds=30)
    directory = "/tmp/perf-trampoline-standby-%d" % os.geteuid()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fifo = os.path.join(directory, str(target.pid))
    os.mkfifo(fifo, 0o600)
    try:
        status, _, err = cli(py, ["attach", str(target.pid)], work)
        assert status == 0 and "support is on in process %d" % target.pid in err, err
        armed = start(targets, py, work, seconds=30, venv=True, env={"PERF_TRAMPOLINE": "standby"})
        time.sleep(0.5)
        assert not os.path.lexists(fifo)
        assert stat.S_ISFIFO(os.lstat(os.path.join(directory, str(armed.pid))).st_mode)
    finally:
        if os.path.lexists(fifo):
            os.unlink(fifo)
