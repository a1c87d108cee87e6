"""Files of dead processes: a map or dump left with our pid is started over (never appended
to) when it is ours, refused when it is not; `clean` removes ours whose process is gone,
never a live process's; `doctor` notes them."""

import os
import pathlib
import subprocess
import time

import pytest
from conftest import map_lines
from test_cli import cli
from test_lifecycle import MAP_LINE, dump_pids_and_names, names_in_map

# Lines a dead process may have left: between them they cover every address our arena could
# have (anywhere in user space).
DEAD_MAP = "".join("%x %x py::dead_%d:/old.py\n" % (start, 1 << 44, i)
                   for i, start in enumerate(range(0x1000, 1 << 47, 1 << 44)))

# Plants an old file of another process at the name its own pid gives (as a dead process
# with that pid would have left it), then execs the command that follows: the planted file
# is that command's. `owner`: "ours", or "other" (given to uid 65534).
WRAPPER = r'''
import os, sys, time
name, owner, content = sys.argv[1:4]
path = "/tmp/" + name % os.getpid()
with open(path, "w") as f:
    f.write(content)
old = time.time() - 3600
os.utime(path, (old, old))
if owner == "other":
    os.chown(path, 65534, 65534)
os.execv(sys.executable, [sys.executable] + sys.argv[4:])
'''

PROG = r'''
import os
def work():
    return sum(range(10))
print(os.getpid(), work(), flush=True)
'''


def run_planted(interp, work, name, owner, backend, content=DEAD_MAP):
    """Runs PROG under the runner through WRAPPER; returns (output, pid, the planted path)."""
    (work / "prog.py").write_text(PROG)
    out = interp.run(["-c", WRAPPER, name, owner, content, "-m", "perf_trampoline", "--backend", backend,
                      str(work / "prog.py")])
    pid = int(out.stdout.split()[0]) if out.stdout else None
    return out, pid, pathlib.Path("/tmp/" + name % pid) if pid else None


@pytest.mark.parametrize("backend", ["perf", "perf_jit"])
def test_a_dead_processs_file_with_our_pid_is_started_over(interp, work, backend):
    name = "perf-%d.map" if backend == "perf" else "jit-%d.dump"
    out, pid, path = run_planted(interp, work, name, "ours", backend)
    try:
        assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
        prog = str(work / "prog.py")
        if backend == "perf":
            lines = map_lines(path)
            assert all(MAP_LINE.match(line) for line in lines), lines[:3]
            names = [line.split(" ", 2)[2] for line in lines]
        else:
            header_pid, load_pids, names = dump_pids_and_names(path.parent, pid)
            assert header_pid == pid and load_pids == {pid}
        assert "py::work:" + prog in names
        assert not any(n.startswith("py::dead_") for n in names), "the dead process's lines are still there"
    finally:
        if path:
            path.unlink(missing_ok=True)


def test_a_planted_map_of_another_user_is_left_alone_and_refused_in_one_line(interp, work):
    if os.geteuid() != 0:
        pytest.skip("only root can give a file to another user")
    out, pid, path = run_planted(interp, work, "perf-%d.map", "other", "perf")
    try:
        assert out.returncode == 0
        assert out.stdout.decode().split()[1] == "45", "the program must run as ever"
        lines = out.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert str(path) in lines[0] and "belongs to uid 65534" in lines[0] and \
            "running without perf support" in lines[0], lines[0]
        st = path.stat()
        assert (st.st_uid, path.read_text()) == (65534, DEAD_MAP)
        assert st.st_mtime < time.time() - 3000, "written to"
    finally:
        if path:
            path.unlink(missing_ok=True)


# A child forked from C (no Python at-fork hook runs) plants a dead process's map at its own
# pid before its first record, which then moves its outputs to that file.
FORKED = r'''
import ctypes, os, sys, time, perf_trampoline
perf_trampoline.activate()
def plant(pid):
    path = os.path.join(os.environ["PERF_TRAMPOLINE_DIR"], "perf-%d.map" % pid)
    with open(path, "w") as f:
        f.write(sys.argv[1])
    old = time.time() - 3600
    os.utime(path, (old, old))
plant(0)  # its trampoline is made here: in the child, calling it records nothing
fork = ctypes.CDLL(None).fork
pid = fork()
if pid == 0:
    plant(os.getpid())
    def child_fn():
        return 2
    child_fn()
    os._exit(0)
os.waitpid(pid, 0)
print(pid)
'''


def test_a_forked_childs_old_map_is_started_over(interp, work):
    (work / "prog.py").write_text(FORKED)
    out = interp.run([str(work / "prog.py"), DEAD_MAP], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    names = names_in_map(work, int(out.stdout))
    assert "py::child_fn:%s" % (work / "prog.py") in names
    assert "py::plant:%s" % (work / "prog.py") in names, "the parent's names, copied in at the fork"
    assert not any(n.startswith("py::dead_") for n in names), "the dead process's lines are still there"


def dead_pid():
    """A pid no process has (one that just ended)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def plant(path, content, age=3600):
    path.write_bytes(content)
    old = time.time() - age
    os.utime(path, (old, old), follow_symlinks=False)
    return len(content)


@pytest.fixture
def planted(work):
    """A directory of files named like ours: leftovers, and files clean must keep."""
    live = subprocess.Popen(["sleep", "600"])
    dead = [dead_pid() for _ in range(4)]
    keep = {
        "perf-%d.map" % live.pid: b"1000 10 py::live:/a.py\n",  # a live process's
        "jit-%d.dump" % os.getpid(): b"JiTD" + b"\0" * 60,       # this one's
        "perf-%d.map.bak" % dead[0]: b"x\n",                      # not one of our names
        "perf-x.map": b"x\n",
        "jit-%d.dump" % dead[1]: b"JiTD" + b"\0" * 60,          # written lately: its pid may be taken since
    }
    leftovers = {"perf-%d.map" % dead[0]: b"1000 10 py::dead:/a.py\n" * 50, "jit-%d.dump" % dead[2]: b"\0" * 777}
    sizes = {}
    for name, content in leftovers.items():
        sizes[name] = plant(work / name, content)
    for name, content in keep.items():
        plant(work / name, content, age=-60 if name == "jit-%d.dump" % dead[1] else 3600)
    (work / ("perf-%d.map" % dead[3])).symlink_to(work / "perf-x.map")  # a link is no file of ours
    if os.geteuid() == 0:
        other = work / ("perf-%d.map" % dead_pid())
        plant(other, b"1000 10 py::theirs:/a.py\n")
        os.chown(other, 65534, 65534)  # another user's
    try:
        yield sizes
    finally:
        live.kill()
        live.wait()


def test_clean_removes_only_our_files_of_processes_that_are_gone(interp, work, planted):
    before = sorted(p.name for p in work.iterdir())
    env = {"PERF_TRAMPOLINE_DIR": str(work)}
    status, stdout, stderr = cli(interp, ["clean", "--dry-run"], work, env=env)
    assert status == 0, stderr
    assert sorted(p.name for p in work.iterdir()) == before, "--dry-run removed something"
    listed = sorted(line.split()[2] for line in stdout.splitlines() if line.startswith("would remove /"))
    assert listed == sorted(str(work / name) for name in planted)
    assert "would remove 2 perf maps and jitdumps of processes that are gone from %s (%d bytes)" \
        % (work, sum(planted.values())) in stdout
    status, stdout, stderr = cli(interp, ["clean"], work, env=env)
    assert status == 0, stderr
    assert sorted(p.name for p in work.iterdir()) == sorted(set(before) - set(planted))
    assert "removed 2 perf maps and jitdumps" in stdout
    status, stdout, _ = cli(interp, ["clean"], work, env=env)
    assert stdout.strip() == "no perf maps or jitdumps of processes that are gone in %s" % work


def test_doctor_notes_leftovers_and_the_command_that_removes_them(interp, work, planted):
    status, stdout, stderr = cli(interp, ["doctor"], work, env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert "note  %s holds 1 perf maps and 1 jitdumps of processes that are gone (%d bytes)" \
        % (work, sum(planted.values())) in stdout, stdout + stderr
    assert "remove them: %s -m perf_trampoline clean" % os.path.basename(interp.python[0]) in stdout
    cli(interp, ["clean"], work, env={"PERF_TRAMPOLINE_DIR": str(work)})
    status, stdout, stderr = cli(interp, ["doctor"], work, env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert "processes that are gone" not in stdout
