"""Never break the program being profiled: fork, threads, deactivation with trampolines on
the stack, every kind of frame, deep recursion, unbounded code creation."""

import os
import re

import pytest
from conftest import map_lines, named_for
from perf_trampoline._native import read_jitdump

MAP_LINE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ py::[^\n]*$")


def run_script(interp, work, source, args=(), env=None, timeout=300):
    path = work / "prog.py"
    path.write_text(source)
    return interp.run([str(path)] + list(args), env=dict({"PERF_TRAMPOLINE_DIR": str(work)}, **(env or {})),
                      timeout=timeout)


def names_in_map(work, pid):
    path = work / ("perf-%d.map" % pid)
    return [l.split(" ", 2)[2] for l in map_lines(path)] if path.exists() else []


def dump_pids_and_names(work, pid):
    """(header pid, {CODE_LOAD pid and tid}, [names]) of our jit-<pid>.dump."""
    # A header of zeros ends the records: the writer's unused room (a child leaving by os._exit).
    dump = read_jitdump(work / ("jit-%d.dump" % pid))
    loads = [r for r in dump["records"] if r["kind"] == "load"]
    return dump["header"]["pid"], {r[k] for r in loads for k in ("pid", "tid")}, [r["name"] for r in loads]


FORK = r'''
import ctypes, os, sys, perf_trampoline
perf_trampoline.activate("perf,perf_jit", persist_after_fork=sys.argv[1] == "persist")
def parent_fn():
    return 1
parent_fn()
# libc's fork() straight from C runs none of Python's at-fork hooks, as a C extension's would.
pid = os.fork() if sys.argv[2] == "os" else ctypes.CDLL(None).fork()
if pid == 0:
    def child_fn():
        return 2
    ok = parent_fn() + child_fn() == 3  # inherited trampolines keep working
    print(os.getpid(), ok, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(os.getpid(), flush=True)
'''


@pytest.mark.parametrize("how", ["os", "libc"])
@pytest.mark.parametrize("persist", ["persist", "fresh"])
def test_fork_child_writes_its_own_files(interp, work, persist, how):
    """The child's records go to files of its own, also when it was forked from C: its outputs
    move before its first record (records go through a shared mapping of the file, so one into
    the parent's would even overwrite the parent's own)."""
    out = run_script(interp, work, FORK, [persist, how])
    assert out.returncode == 0, out.stderr.decode()
    assert out.stderr == b""
    (child, ok), (parent,) = [l.split() for l in out.stdout.decode().splitlines()]
    child, parent = int(child), int(parent)
    assert ok == "True"
    prog = str(work / "prog.py")
    parent_names, child_names = names_in_map(work, parent), names_in_map(work, child)
    assert "py::parent_fn:" + prog in parent_names
    assert not any("child_fn" in n for n in parent_names), "the child wrote into the parent's map"
    assert "py::child_fn:" + prog in child_names
    assert ("py::parent_fn:" + prog in child_names) == (persist == "persist")
    header_pid, load_pids, names = dump_pids_and_names(work, child)
    assert header_pid == child and load_pids == {child}  # pid and tid: the child's only thread
    assert ("py::parent_fn:" + prog in names) == (persist == "persist")
    assert not any("child_fn" in n for n in dump_pids_and_names(work, parent)[2])


MULTIPROCESSING = r'''
import multiprocessing as mp, os, sys
def work(_):
    return os.getpid()
if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        pids = sorted(set(pool.map(work, range(40), chunksize=1)))
    print(os.getpid(), *pids)
'''


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_workers_get_their_own_maps(interp, work, method):
    out = run_script(interp, work, MULTIPROCESSING, [method], env={"PERF_TRAMPOLINE": "perf"})
    assert out.returncode == 0, out.stderr.decode()
    parent, *workers = (int(p) for p in out.stdout.split())
    prog = str(work / "prog.py")
    for w in workers:
        assert "py::work:" + prog in names_in_map(work, w), "worker %d has no map naming work()" % w
    assert "py::work:" + prog not in names_in_map(work, parent)


PREPARE = r'''
import os, perf_trampoline
perf_trampoline.activate(persist_after_fork=False)
class Handler:
    def get(self):
        return sum(x for x in range(3))
    @staticmethod
    def helper():
        return (lambda: 4)()
prepared = perf_trampoline.prepare(Handler)
pid = os.fork()
if pid == 0:
    def only_in_child():
        return Handler().get() + Handler.helper()
    print(os.getpid(), only_in_child(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print(os.getpid(), prepared)
'''


def test_prepared_code_costs_the_children_nothing(interp, work):
    """Prepared before fork, the child runs the inherited trampolines and writes nothing for
    them (its map, which here starts empty, names only code it made itself)."""
    out = run_script(interp, work, PREPARE)
    assert out.returncode == 0, out.stderr.decode()
    (child, value), (parent, prepared) = ([int(x) for x in l.split()] for l in out.stdout.decode().splitlines())
    assert value == 7
    assert prepared >= 4  # get, its generator expression, helper, the lambda
    prog = str(work / "prog.py")
    cls = "Handler." if interp.version >= (3, 11) else ""  # no qualname before 3.11
    prepared_names = ["py::%sget:%s" % (cls, prog), "py::%shelper:%s" % (cls, prog)]
    assert all(n in names_in_map(work, parent) for n in prepared_names)
    child_names = names_in_map(work, child)
    assert "py::only_in_child:" + prog in child_names
    assert not any(n in child_names for n in prepared_names), "the child re-made prepared trampolines"


THREADS = r'''
import sys, threading, perf_trampoline
stop = False
errors = []
def worker(k):
    def f(n):
        return n if n < 2 else f(n - 1) + 1
    while not stop:
        if f(30) != 30:
            errors.append(k)
threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
wrong = 0
for i in range(1000):
    perf_trampoline.activate()
    wrong += perf_trampoline.is_active() is not True
    perf_trampoline.deactivate()
    wrong += perf_trampoline.is_active() is not False
perf_trampoline.activate()
stop = True
for t in threads:
    t.join()
print(len(errors), wrong, perf_trampoline.is_active(), perf_trampoline._state()["extra_index"])
'''


def test_threads_while_another_thread_toggles_support(interp, work):
    out = run_script(interp, work, THREADS)
    assert out.returncode == 0, out.stderr.decode()
    errors, wrong, active, index = out.stdout.decode().split()
    assert (errors, wrong, active) == ("0", "0", "True")
    assert int(index) >= 0
    lines = [l for p in work.glob("perf-*.map") for l in map_lines(p)]
    assert lines and all(MAP_LINE.match(l) for l in lines), "torn or foreign map line"


ON_STACK = r'''
import resource, perf_trampoline
def nest(depth, cycle):
    if depth == 0:
        perf_trampoline.deactivate()
        # Fresh code while our frames are below us on the stack, then reactivate.
        exec("def fresh_%d():\n    return %d\nassert fresh_%d() == %d" % ((cycle,) * 4), {})
        perf_trampoline.activate()
        return cycle
    return nest(depth - 1, cycle)
perf_trampoline.activate()
rss = []
for cycle in range(3000):
    assert nest(40, cycle) == cycle
    if cycle in (500, 2999):
        rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
state = perf_trampoline._state()
print(state["extra_index"], rss[1] - rss[0], state["code_memory"])
'''


def test_deactivate_and_reactivate_with_trampolines_on_the_stack(interp, work):
    out = run_script(interp, work, ON_STACK)
    assert out.returncode == 0, out.stderr.decode()
    index, rss_growth_kib, code_memory = (int(x) for x in out.stdout.split())
    assert index >= 0
    # 2,500 cycles each make two code objects (the exec'd module and its function): at most
    # 16 bytes of trampoline each, plus CPython's own garbage; nothing per cycle beyond that.
    assert rss_growth_kib < 2048, "memory grows by %d KiB over 2,500 cycles" % rss_growth_kib
    assert code_memory <= 256 * 1024


RECURSION = r'''
import os, sys
print(os.getpid(), flush=True)
limit = int(sys.argv[1])
if limit:
    sys.setrecursionlimit(limit)
depth = 0
def down():
    global depth
    depth += 1
    down()
try:
    down()
except RecursionError:
    print("RecursionError", depth)
'''


@pytest.mark.parametrize("limit", [0, 50000])
def test_deep_recursion_ends_in_recursion_error(interp, work, limit):
    ours = run_script(interp, work, RECURSION, [str(limit)], env={"PERF_TRAMPOLINE": "perf"})
    assert ours.returncode == 0, "crashed: %d %s" % (ours.returncode, ours.stderr.decode()[-500:])
    _, word, depth = ours.stdout.split()
    assert word == b"RecursionError"
    plain = run_script(interp, work, RECURSION, [str(limit)])
    if plain.returncode == 0:  # 3.9 and 3.10 crash here on their own, without any hook
        assert int(depth) <= int(plain.stdout.split()[2])
    if interp.version >= (3, 12):
        theirs = run_script(interp, work, RECURSION, [str(limit)], env={"PYTHONPERFSUPPORT": "1"})
        # CPython's own map is always in /tmp: take it away, as nothing else would.
        for left in named_for(int(theirs.stdout.split()[0])):
            os.unlink(left)
        if theirs.returncode == 0:
            # Both stop where the C stack runs low; a frame either way is stack alignment.
            assert int(depth) >= 0.995 * int(theirs.stdout.split()[2]), "we give up earlier than CPython's -X perf"


RECURSION_IN_THREADS = r'''
import os, sys, threading
sys.setrecursionlimit(50000)
def down(depth):
    try:
        return down(depth + 1)
    except RecursionError:
        return depth
def in_thread():
    print("thread", down(0), flush=True)
    pid = os.fork()
    if pid == 0:  # this child's only thread runs on the parent thread's stack, not the main one's
        print("forked", down(0), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
t = threading.Thread(target=in_thread)
t.start()
t.join()
print("main", down(0))
'''


def test_deep_recursion_in_threads_and_a_child_forked_from_one(interp, work):
    """The guard finds each thread's own stack: the main thread's without reading
    /proc/self/maps, and that shortcut must not take a child forked from another thread for a
    main thread (it would refuse every frame there, or let the stack overflow)."""
    out = run_script(interp, work, RECURSION_IN_THREADS, env={"PERF_TRAMPOLINE": "perf"})
    assert out.returncode == 0, "crashed: %d %s" % (out.returncode, out.stderr.decode()[-500:])
    depths = dict((k.decode(), int(v)) for k, v in (line.split() for line in out.stdout.splitlines()))
    assert set(depths) == {"thread", "forked", "main"}, out.stdout
    # Each stops where its stack (or CPython's own limit: 3.12 counts C recursion) ends, never
    # near the start.
    assert min(depths.values()) > 500, depths
    assert depths["forked"] >= 0.9 * depths["thread"], depths


GROWTH = r'''
import sys, perf_trampoline
perf_trampoline.activate(max_code_memory=int(sys.argv[1]))
total = 0
for i in range(int(sys.argv[2])):
    ns = {}
    exec("def f%d():\n    return %d" % (i, i), ns)
    total += ns["f%d" % i]()
state = perf_trampoline._state()
print(total, state["slots_created"], state["code_memory"])
'''


def test_past_the_budget_code_runs_untrampolined_with_one_warning(interp, work):
    n = 20000
    out = run_script(interp, work, GROWTH, [str(64 * 1024), str(n)])
    assert out.returncode == 0, out.stderr.decode()
    total, slots, memory = (int(x) for x in out.stdout.split())
    assert total == n * (n - 1) // 2
    assert memory <= 64 * 1024 and 0 < slots < 2 * n
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and "budget of 65536 bytes is used up" in lines[0], lines


def test_memory_per_code_object_is_bounded(interp, work):
    """Code objects made without end: what we add per code object stays small and constant."""
    n = 200000
    ours = run_script(interp, work, GROWTH, [str(1 << 30), str(n)])
    assert ours.returncode == 0, ours.stderr.decode()
    _, slots, memory = (int(x) for x in ours.stdout.split())
    assert slots == 2 * n  # each exec: the module code and the function
    assert memory / slots <= 16.5, "%.1f bytes of trampoline memory per code object" % (memory / slots)
