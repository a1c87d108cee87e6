"""Forked children's functions get their own names in perf's view: a child's new trampolines
lie in memory it mapped itself, so perf (which copies the parent's memory map into the child
at fork) never looks them up in the parent's map."""

import pathlib
import re
import time

import pytest
from conftest import remove_recorded_outputs
from perf_trampoline.stacks import python_chain, records
from test_lifecycle import dump_pids_and_names, names_in_map, run_script

# The child blocks until the parent has made new code after the fork, so the parent's new
# records are in its files before the child's first one (a C fork() runs no at-fork hook, so
# nothing makes code in the child before child_fn).
MECHANISM = r'''
import ctypes, os, sys, perf_trampoline
perf_trampoline.activate(sys.argv[1], persist_after_fork=sys.argv[2] == "persist")
def before_fork():
    return 1
before_fork()
with open("/proc/self/maps") as f:
    maps = f.read()
r, w = os.pipe()
pid = os.fork() if sys.argv[3] == "os" else ctypes.CDLL(None).fork()
if pid == 0:
    os.read(r, 1)
    def child_fn():
        return 2
    os._exit(0 if before_fork() + child_fn() == 3 else 1)
def parent_after_fork():
    return 3
parent_after_fork()
os.write(w, b"x")
status = os.waitpid(pid, 0)[1]
print(os.getpid(), pid, status)
sys.stdout.write(maps)
'''


def _executable_ranges(maps_text):
    ranges = []
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and "x" in fields[1]:
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


def _map_addresses(path):
    """{name: address} of a perf map."""
    return {line.split(" ", 2)[2]: int(line.split(" ", 1)[0], 16)
            for line in path.read_text(errors="surrogateescape").splitlines() if line}


@pytest.mark.parametrize("how", ["os", "libc"])
@pytest.mark.parametrize("persist", ["persist", "fresh"])
@pytest.mark.parametrize("backend", ["perf", "perf,perf_jit"])
def test_child_code_lies_outside_memory_mapped_before_the_fork(interp, work, backend, persist, how):
    out = run_script(interp, work, MECHANISM, [backend, persist, how])
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr == b""
    head, maps = out.stdout.decode().split("\n", 1)
    parent, child, status = (int(x) for x in head.split())
    assert status == 0, "the child's inherited and new trampolines gave wrong results"
    prog = str(work / "prog.py")
    child_addrs = _map_addresses(work / ("perf-%d.map" % child))
    child_fn = child_addrs["py::child_fn:" + prog]
    inherited = _executable_ranges(maps)
    assert inherited, "no executable mapping read before the fork"
    assert not any(lo <= child_fn < hi for lo, hi in inherited), \
        "the child's new trampoline %#x lies in memory mapped before the fork" % child_fn
    # The child's files name what the parent had named at the fork, never what it named later.
    assert ("py::before_fork:" + prog in child_addrs) == (persist == "persist")
    assert "py::parent_after_fork:" + prog in names_in_map(work, parent)
    assert "py::parent_after_fork:" + prog not in child_addrs, "a name the parent made after the fork"
    if "perf_jit" in backend:
        _, _, dump_names = dump_pids_and_names(work, child)
        assert "py::child_fn:" + prog in dump_names
        assert "py::parent_after_fork:" + prog not in dump_names
        assert ("py::before_fork:" + prog in dump_names) == (persist == "persist")


# Two workers run child_task -> leaf_work while the forking process makes new code of its own
# (parent_only_*): before the fix, that code took the addresses the workers' new trampolines
# had, and perf named the workers' samples with it.
WORKERS = r'''
import concurrent.futures as cf, ctypes, multiprocessing as mp, os, sys, time

def leaf_work(n):
    total = 0
    for i in range(n):
        total += i * i % 7
    return total

def child_task(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        leaf_work(3000)
    return os.getpid()

exec("".join("def parent_only_%d(n):\n    return sum(range(n))\n" % i for i in range(64)))

def parent_after_fork(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in range(64):
            globals()["parent_only_%d" % i](200)

def main(how, seconds):
    if how == "os-prepared":
        import perf_trampoline
        if perf_trampoline.is_active():  # ours: the workers inherit these trampolines
            perf_trampoline.prepare(sys.modules[__name__])
        how = "os"
    if how in ("os", "libc"):
        pids = []
        for _ in range(2):
            pid = os.fork() if how == "os" else ctypes.CDLL(None).fork()
            if pid == 0:
                child_task(seconds)
                os._exit(0)
            pids.append(pid)
        parent_after_fork(seconds / 3)
        for pid in pids:
            assert os.waitpid(pid, 0)[1] == 0
    else:
        with cf.ProcessPoolExecutor(2, mp_context=mp.get_context(how)) as pool:
            futures = [pool.submit(child_task, seconds) for _ in range(2)]
            parent_after_fork(seconds / 3)
            pids = sorted({f.result() for f in futures})
    print("workers", *pids, flush=True)

if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
'''

HOW = ["os", "os-prepared", "libc", "fork", "forkserver"]


def _record(interp, work, data, how, env, call_graph, seconds):
    prog = work / "prog.py"
    prog.write_text(WORKERS)
    rec = interp.perf(["record", "-F", "499", "--call-graph", call_graph, "-q", "-o", str(data), "--", "env"]
                      + ["%s=%s" % kv for kv in env.items()] + interp.python + [str(prog), how, str(seconds)],
                      cwd=work)
    assert rec.returncode == 0, rec.stderr.decode()
    workers = [int(p) for p in rec.stdout.decode().split()[1:]]
    assert workers, rec.stdout.decode()
    script = interp.perf(["script", "--no-inline", "-F", "comm,pid,tid,ip,sym,dso", "-i", str(data)], cwd=work)
    assert script.returncode == 0, script.stderr.decode()
    return prog, workers, script.stdout.decode(errors="replace")


def _samples_by_pid(text):
    """{pid: [python chain of each sample]} of `perf script -F comm,pid,tid,...` output."""
    out = {}
    for header, frames in records(text.splitlines()):
        m = re.search(r"\s(\d+)/\d+\s*$", header)
        if m and "PERF_RECORD_" not in header:
            out.setdefault(int(m.group(1)), []).append(python_chain(frames))
    return out


def _assert_named_from_own_map(worker, chains):
    """Every Python name in a worker's samples is one its own map holds (which starts with what
    its forking process had named at the fork), never one only the forking process made later."""
    own = _map_addresses(pathlib.Path("/tmp/perf-%d.map" % worker))
    names = {"py::%s:%s" % frame for chain in chains for frame in chain}
    assert not [n for n in names if n.startswith("py::parent_only_")], \
        "worker %d's samples carry names only its forking process made" % worker
    assert names <= own.keys(), "worker %d's samples carry names not in its map: %s" % (worker, sorted(names - own.keys())[:5])


@pytest.mark.parametrize("how", HOW)
def test_workers_samples_carry_the_workers_names_under_perf_record_g(interp, work, how):
    """Frame-pointer walks (perf record -g): the workers' chain leaf_work < child_task, against
    CPython's own perf map on the same interpreter and program. CPython names no C-forked
    child's code (it too hands out trampolines mapped before the fork), so children of a C
    fork(), like children that inherit prepare()d trampolines, are held to what CPython gives
    children of os.fork()."""
    if not interp.has_frame_pointers():
        pytest.skip("%s is built without frame pointers: perf record -g cannot walk it "
                    "(test_child_code_lies_outside_memory_mapped_before_the_fork checks the cause "
                    "there)" % interp.name)
    if interp.version < (3, 12):
        pytest.skip("CPython %d.%d has no perf support of its own to compare with" % interp.version[:2])
    shares = {}
    runs = (("ours", how, {"PERF_TRAMPOLINE": "perf"}),
            ("cpython", "os" if how in ("libc", "os-prepared") else how, {"PYTHONPERFSUPPORT": "1"}))
    for who, how_run, env in runs:
        data, since = work / ("perf-%s.data" % who), time.time()
        try:
            _, workers, text = _record(interp, work, data, how_run, env, "fp", 2.0)
            by_pid = _samples_by_pid(text)
            if who == "ours":
                for w in workers:
                    _assert_named_from_own_map(w, by_pid.get(w, []))
        finally:
            remove_recorded_outputs(interp, data, since, cwd=work)
        # Among the workers' own samples: how long the forking process takes to start and to
        # make its code is not what this measures.
        chains = [chain for w in workers for chain in by_pid.get(w, [])]
        hits = sum(1 for chain in chains if [q for q, _ in chain[:2]] == ["leaf_work", "child_task"])
        shares[who] = (hits, len(chains))
    (ours, ours_total), (theirs, theirs_total) = shares["ours"], shares["cpython"]
    assert theirs >= 100, "CPython's own run has too few worker samples to compare: %s" % shares
    assert ours / ours_total >= 0.9 * theirs / theirs_total, \
        "workers' chains: ours %d of %d worker samples, CPython's %d of %d" % (
            ours, ours_total, theirs, theirs_total)
