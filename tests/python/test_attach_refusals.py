"""attach and record -p refusing a process they cannot serve, on real perf and real
interpreters: each refusal is one line that names what is wrong and the fix (no traceback),
and the target runs on."""

import os
import subprocess
import time

import pytest
from conftest import INTERPRETERS, named_for
from test_attach import REMOTE, TARGET, start
from test_cli import clean_env

OLDER = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.version < (3, 14)] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.9-3.13: run scripts/test-interpreters.sh"))]


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
    started = time.time()
    target = start(targets, py, work, seconds=0, program=program)
    refused(py, work, ["attach", str(target.pid), "--timeout", "1"],
            "process %d ran no Python code in its main thread for 1 s" % target.pid)
    status, out, err = target.finish()
    # The withdrawn request ran when the sleep ended, and did nothing.
    assert status == 0 and out.split() == ["True"], (out, err)
    assert named_for(target.pid, since=started) == []


def test_refusal_for_a_build_without_remote_debugging():
    pytest.skip("every 3.14+ here is built with remote debugging (Debian's): the --without-remote-debug "
                "refusal (sys.is_remote_debug_enabled() false in the target's interpreter) is untested")
