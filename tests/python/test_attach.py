"""Attaching to running Python processes (attach, detach, record -p) on real perf and real
interpreters: a plain interpreter without our package on its path (3.14+, sys.remote_exec),
the refusals (each message, and the target still runs), and the files handed over."""

import os
import signal
import stat
import subprocess
import time

import pytest
from conftest import INTERPRETERS
from test_cli import clean_env, cli, folded_stacks, named_for

REMOTE = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.version >= (3, 14)] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.14+: run scripts/test-interpreters.sh"))]
OLDER = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.version < (3, 14)] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.9-3.13: run scripts/test-interpreters.sh"))]
STANDBY = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name in ("bullseye-3.9", "host-3.11", "sid-3.13")] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no bullseye-3.9/host-3.11/sid-3.13: run scripts/test-interpreters.sh"))]

# Prints its pid, then runs a known call chain (outer > middle > leaf) in its main thread and
# THREADS-1 more for SECONDS (or until SIGTERM), checking every result, and says how it went:
# the calls made, the wrong results, and whether support was left on.
TARGET = r'''
import os, sys, threading, time
def leaf(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def middle(n):
    return leaf(n) + 1
def outer(n):
    return middle(n) - 1
N = 2000
RIGHT = (N - 1) * N * (2 * N - 1) // 6
seconds, threads = float(sys.argv[1]), int(sys.argv[2])
calls, wrong, stop = [0], [0], []
import signal
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
def work():
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop:
        if outer(N) != RIGHT:
            wrong[0] += 1
        calls[0] += 1
print(os.getpid(), flush=True)
others = [threading.Thread(target=work) for _ in range(threads - 1)]
for t in others:
    t.start()
work()
for t in others:
    t.join()
pt = sys.modules.get("perf_trampoline")
print("calls", calls[0], "wrong", wrong[0], "active", pt.is_active() if pt else None, flush=True)
'''
CHAIN = ("outer", "middle", "leaf")


def plain(py):
    """The interpreter of ``py``'s version itself, not its venv: our package is not on its path."""
    return "python%d.%d" % py.version


class Target:
    """TARGET run in ``py``'s root by the plain interpreter (``venv``: by the venv's,
    which has our package)."""

    def __init__(self, py, work, seconds, threads=1, args=(), env=None, program=TARGET, venv=False):
        (work / "target.py").write_text(program)
        python = py.python if venv else [plain(py)]
        self.proc = subprocess.Popen(py.wrap + python + list(args) + [str(work / "target.py"),
                                                                             str(seconds), str(threads)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env))
        self.pid = int(self.proc.stdout.readline())

    def finish(self, timeout=120):
        """(exit status, stdout after the pid line, stderr)."""
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out.decode(), err.decode()

    def running(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def targets():
    started = []
    yield started
    for t in started:
        t.kill()
        for path in named_for(t.pid):
            os.unlink(path)


def start(targets, *args, **kw):
    t = Target(*args, **kw)
    targets.append(t)
    return t


def outcome(stdout):
    """{"calls": int, "wrong": int, "active": text} from TARGET's last line."""
    words = stdout.split()
    return {"calls": int(words[1]), "wrong": int(words[3]), "active": words[5]}


def chain_share(folded):
    """The share of the samples whose Python frames end in CHAIN (leaf innermost)."""
    stacks = folded_stacks(folded)
    total = sum(stacks.values())
    chained = sum(n for s, n in stacks.items()
                  if tuple(f[4:].split(":")[0] for f in s if f.startswith("py::"))[-3:] == CHAIN)
    return chained / total


@pytest.mark.parametrize("py", REMOTE)
def test_record_pid_on_a_plain_interpreter(py, work, targets):
    out = subprocess.run(py.wrap + [plain(py), "-c", "import perf_trampoline"], capture_output=True)
    assert out.returncode != 0, "our package must not be on the plain interpreter's path"
    target = start(targets, py, work, seconds=9)
    time.sleep(0.5)
    status, out, err = cli(py, ["record", "-p", str(target.pid), "--duration", "3", "-o", str(work / "x.svg")],
                           work)
    assert status == 0, err
    assert "frames already running when support came on have no trampoline" in out
    assert "support is off again in process %d" % target.pid in err
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    assert target.running()
    status, out, err = target.finish()
    assert status == 0, err
    result = outcome(out)
    assert result["wrong"] == 0 and result["calls"] > 0
    assert result["active"] == "False"  # our module stays imported, support is off


@pytest.mark.parametrize("py", REMOTE)
def test_attach_detach_and_attach_again_says_it_is_on(py, work, targets):
    target = start(targets, py, work, seconds=30)
    pid = str(target.pid)
    status, _, err = cli(py, ["attach", pid], work)
    assert status == 0 and "support is on in process %s" % pid in err, err
    assert os.path.exists("/tmp/perf-%s.map" % pid)
    status, _, err = cli(py, ["attach", pid, "--backend", "perf_jit"], work)
    assert status == 0 and "support was already on in process %s (backend perf)" % pid in err, err
    status, _, err = cli(py, ["detach", pid], work)
    assert status == 0 and "support is off in process %s" % pid in err, err
    status, _, err = cli(py, ["detach", pid], work)
    assert status == 0 and "support was not on" in err, err
    assert os.path.exists("/tmp/perf-%s.map" % pid), "the perf map stays for perf report"
    assert target.running()
    target.proc.send_signal(signal.SIGTERM)
    assert target.finish()[0] == 0


# --- refusals: one line with the fix, and the target goes on ---------------------------------

def refused(py, work, args, message, env=None, prefix=()):
    out = subprocess.run(py.wrap + list(prefix) + py.python + ["-m", "perf_trampoline"] + args, cwd=work,
                         env=clean_env(env), capture_output=True, timeout=120)
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2, err
    assert message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_a_process_that_does_not_exist(py, work):
    gone = subprocess.Popen(["true"])
    gone.wait()
    refused(py, work, ["attach", str(gone.pid)], "no process %d" % gone.pid)


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_a_process_that_is_not_python(py, work):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        refused(py, work, ["record", "-p", str(sleeper.pid), "--duration", "1", "-o", str(work / "x.svg")],
                "process %d is not a Python process" % sleeper.pid)
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("py", REMOTE)
@pytest.mark.parametrize("how", ["env", "option"])
def test_refuses_when_remote_debugging_is_disabled(py, work, targets, how):
    target = start(targets, py, work, seconds=30,
                   args=["-X", "disable_remote_debug"] if how == "option" else [],
                   env={"PYTHON_DISABLE_REMOTE_DEBUG": "1"} if how == "env" else None)
    what = "-X disable_remote_debug" if how == "option" else "PYTHON_DISABLE_REMOTE_DEBUG"
    refused(py, work, ["attach", str(target.pid)], "process %d was started with %s" % (target.pid, what))
    assert target.running()


@pytest.mark.parametrize("py", OLDER)
def test_refuses_an_unprepared_older_python_and_names_the_preparation(py, work, targets):
    target = start(targets, py, work, seconds=30, venv=True)
    refused(py, work, ["attach", str(target.pid)], "start it with PERF_TRAMPOLINE=standby")
    assert target.running()


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_another_users_process(py, work, targets):
    target = start(targets, py, work, seconds=30)
    refused(py, work, ["attach", str(target.pid)], "process %d belongs to another user (uid 0)" % target.pid,
            prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
    assert target.running()


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_without_cap_sys_ptrace(py, work, targets):
    if os.geteuid() != 0:
        pytest.skip("needs root: the container case is root without CAP_SYS_PTRACE")
    target = start(targets, py, work, seconds=30)
    refused(py, work, ["attach", str(target.pid)], "this container lacks CAP_SYS_PTRACE",
            prefix=["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"])
    assert target.running()


def test_yama_ptrace_scope():
    if not os.path.exists("/proc/sys/kernel/yama/ptrace_scope"):
        pytest.skip("this kernel has no Yama LSM (no /proc/sys/kernel/yama/ptrace_scope): its refusal is untested here")
    pytest.skip("changing kernel.yama.ptrace_scope would affect every other user of this machine")


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_when_perf_trampoline_cannot_be_imported_there(py, work, targets):
    (work / "own").mkdir()
    (work / "own" / "perf_trampoline.py").write_text("NOT_OURS = True\n")
    program = "import sys\nsys.path.insert(0, %r)\nimport perf_trampoline\n" % str(work / "own") + TARGET
    target = start(targets, py, work, seconds=30, program=program)
    refused(py, work, ["attach", str(target.pid)], "perf_trampoline cannot be imported in process %d" % target.pid)
    assert target.running()


@pytest.mark.parametrize("py", REMOTE[:1])
def test_refuses_when_the_target_exits_during_the_attach(py, work, targets):
    # The main thread sleeps (so runs no Python, not our request either) until SIGALRM ends
    # the process.
    program = "import os, signal, time\nprint(os.getpid(), flush=True)\nsignal.alarm(2)\ntime.sleep(30)\n"
    target = start(targets, py, work, seconds=0, program=program)
    refused(py, work, ["attach", str(target.pid), "--timeout", "30"],
            "process %d exited during the attach" % target.pid)


@pytest.mark.parametrize("py", REMOTE[:1])
def test_a_main_thread_that_runs_no_python_times_out_and_nothing_changes_later(py, work, targets):
    program = ("import os, sys, time\nprint(os.getpid(), flush=True)\ntime.sleep(3)\n"
               "time.sleep(0.5)\nprint(sys.modules.get('perf_trampoline') is None, flush=True)\n")
    target = start(targets, py, work, seconds=0, program=program)
    refused(py, work, ["attach", str(target.pid), "--timeout", "1"],
            "process %d ran no Python code in its main thread for 1 s" % target.pid)
    status, out, err = target.finish()
    # The withdrawn request ran when the sleep ended, and did nothing.
    assert status == 0 and out.split() == ["True"], (out, err)
    assert not os.path.exists("/tmp/perf-%d.map" % target.pid)


# --- the files handed to the target --------------------------------------------------------

def test_handoff_directory_and_files():
    from perf_trampoline import handoff

    base = os.environ.get("TMPDIR", "/tmp")
    d = handoff.private_dir(base)
    try:
        assert stat.S_IMODE(os.lstat(d).st_mode) == 0o700
        path = handoff.create(d, "script.py", b"print(1)\n")
        st = os.lstat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
        handoff.check_file(path)
        with pytest.raises(FileExistsError):  # O_EXCL: never written over
            handoff.create(d, "script.py", b"evil\n")
        os.symlink("/etc/passwd", os.path.join(d, "link"))
        with pytest.raises(FileExistsError):  # O_EXCL with O_NOFOLLOW: never through a link
            handoff.create(d, "link", b"evil\n")
        with pytest.raises(handoff.UnsafeHandoff, match="not a plain file"):
            handoff.check_file(os.path.join(d, "link"))
        os.chmod(path, 0o644)
        with pytest.raises(handoff.UnsafeHandoff, match="not ours alone"):
            handoff.check_file(path)
        os.chmod(d, 0o755)
        with pytest.raises(handoff.UnsafeHandoff, match="has mode 755"):
            handoff.create(d, "other.py", b"")
        os.chmod(d, 0o700)
        os.link(path, os.path.join(d, "hard"))
        with pytest.raises(handoff.UnsafeHandoff, match="not a plain file"):
            handoff.check_file(path)
        if os.geteuid() == 0:
            os.chown(d, 65534, -1)
            with pytest.raises(handoff.UnsafeHandoff, match="belongs to uid 65534"):
                handoff.check_dir(d)
            handoff.check_dir(d, owners={65534})  # root handing it to the target's user
            os.chown(d, 0, -1)
    finally:
        handoff.remove(d)
    assert not os.path.exists(d)
    link = os.path.join(base, "perf-trampoline-test-link-%d" % os.getpid())
    os.symlink(base, link)
    try:
        with pytest.raises(handoff.UnsafeHandoff, match="not a directory"):
            handoff.check_dir(link)
    finally:
        os.unlink(link)



# --- standby (PERF_TRAMPOLINE=standby at start-up; 3.9-3.13 have no other way) ---------------

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


def exec_anon_bytes(pid):
    """Bytes of anonymous executable memory in ``pid`` (our trampolines live there)."""
    total = 0
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            fields = line.split()
            if "x" in fields[1] and len(fields) < 6:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                total += end - start
    return total


CYCLES = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name in ("sid-3.13", "sid-3.14")] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no sid-3.13/sid-3.14: run scripts/test-interpreters.sh"))]


@pytest.mark.parametrize("py", CYCLES)
def test_fifty_attach_detach_cycles_with_eight_threads(py, work, targets):
    standby = py.version < (3, 14)
    target = start(targets, py, work, seconds=600, threads=8, venv=standby,
                   env={"PERF_TRAMPOLINE": "standby"} if standby else None)
    pid = str(target.pid)
    sizes = []
    for _ in range(50):
        for verb in ("attach", "detach"):
            status, _, err = cli(py, [verb, pid], work)
            assert status == 0, err
        sizes.append(exec_anon_bytes(target.pid))
    # Later cycles reuse the trampolines of the first (only the code that runs the request
    # itself is new each time): a chunk of 64 KiB at most.
    assert sizes[-1] - sizes[0] <= 64 * 1024, sizes
    assert target.running()
    target.proc.send_signal(signal.SIGTERM)
    status, out, err = target.finish()
    assert status == 0, err
    result = outcome(out)
    assert result["wrong"] == 0 and result["calls"] > 0 and result["active"] == "False"


@pytest.mark.parametrize("py", REMOTE[:1] + STANDBY[-1:])
def test_doctor_pid(py, work, targets):
    plain = start(targets, py, work, seconds=60, venv=True)
    prepared = start(targets, py, work, seconds=60, venv=True, env={"PERF_TRAMPOLINE": "standby"})
    status, out, _ = cli(py, ["doctor", "--pid", str(prepared.pid)], work)
    assert "ok    prepared with PERF_TRAMPOLINE=standby" in out, out
    status, out, _ = cli(py, ["doctor", "--pid", str(plain.pid)], work)
    if py.version >= (3, 14):
        assert "ok    sys.remote_exec can reach it" in out, out
    else:
        assert status == 2 and "FAIL  process %d runs CPython %d.%d, which cannot be attached to without preparation: " \
            "start it with PERF_TRAMPOLINE=standby" % ((plain.pid,) + py.version) in out, out
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        status, out, _ = cli(py, ["doctor", "--pid", str(sleeper.pid)], work)
        assert status == 2 and "FAIL  process %d is not a Python process" % sleeper.pid in out, out
    finally:
        sleeper.kill()
        sleeper.wait()
    assert plain.running() and prepared.running()


@pytest.mark.parametrize("py", REMOTE[:1] + STANDBY[:1])
def test_record_pid_on_a_process_with_support_on_leaves_it_on(py, work, targets):
    # On 3.14+ turned on at start-up; before, through standby (nothing else reaches them).
    standby = py.version < (3, 14)
    target = start(targets, py, work, seconds=6, venv=True,
                   env={"PERF_TRAMPOLINE": "standby" if standby else "perf_jit"})
    if standby:
        assert cli(py, ["attach", str(target.pid), "--backend", "perf_jit"], work)[0] == 0
    time.sleep(0.5)
    status, _, err = cli(py, ["record", "-p", str(target.pid), "--duration", "1", "-o", str(work / "x.svg")], work)
    assert status == 0, err
    assert "support was already on in process %d (backend perf_jit): recording anyway, leaving it on" % target.pid in err
    assert "writes perf_jit, not the perf that --mode unwind reads" in err
    status, out, err = target.finish()
    assert status == 0 and outcome(out)["active"] == "True", (out, err)


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


def test_refusal_for_a_build_without_remote_debugging():
    pytest.skip("every 3.14+ here is built with remote debugging (Debian's): the --without-remote-debug "
                "refusal (sys.is_remote_debug_enabled() false in the target's interpreter) is untested")


@pytest.mark.parametrize("py", REMOTE[:1] + STANDBY[-1:])
def test_root_attaches_to_another_users_process(py, work, targets):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    standby = py.version < (3, 14)
    python = py.python if standby else [plain(py)]
    proc = subprocess.Popen(py.wrap + ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + python
                            + ["-c", TARGET, "8", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/",
                            env=clean_env({"PERF_TRAMPOLINE": "standby"} if standby else None))
    target = Target.__new__(Target)
    target.proc = proc
    target.pid = int(proc.stdout.readline())
    targets.append(target)
    assert os.stat("/proc/%d" % target.pid).st_uid == 65534
    status, _, err = cli(py, ["attach", str(target.pid)], work)
    assert status == 0 and "support is on in process %d" % target.pid in err, err
    status, _, err = cli(py, ["detach", str(target.pid)], work)
    assert status == 0 and "support is off in process %d" % target.pid in err, err
    status, out, err = target.finish()
    assert status == 0 and outcome(out)["wrong"] == 0 and outcome(out)["active"] == "False", err


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
