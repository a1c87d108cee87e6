"""Attaching to running Python processes (attach, detach, record -p, doctor --pid) on real perf
and real interpreters: a plain interpreter without our package on its path (3.14+,
sys.remote_exec), many cycles on a busy process, root and another user's process, and the
files handed over. Also the target program and its helpers that test_attach_refusals.py,
test_standby.py and test_containers.py start their processes with."""

import os
import signal
import stat
import subprocess
import time

import pytest
from conftest import INTERPRETERS
from test_cli import clean_env, cli, folded_stacks

REMOTE = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.version >= (3, 14)] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.14+: run scripts/test-interpreters.sh"))]
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
pt = sys.modules.get("perf_trampoline._native")  # the start-up switches load it alone
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
