"""Support follows the process tree, however it was turned on: multiprocessing's workers
(fork, forkserver, spawn; Pool and ProcessPoolExecutor), subprocess and os.execv of a Python
each write files of their own, and nothing of theirs lands in the parent's; the opt-outs keep
it to one process."""

import json

import pytest
from test_lifecycle import dump_pids_and_names, names_in_map

# Four workers, each made to run one task at the same time (a barrier), each task defining and
# calling a function named by its worker's pid: a function only that worker ran.
TREE = r'''
import concurrent.futures, json, multiprocessing, os, sys

def only_here():
    name = "only_in_%d" % os.getpid()
    namespace = {}
    exec("def %s():\n    return %d\n" % (name, os.getpid()), namespace)
    return namespace[name]()

def task(i):
    barrier.wait(120)
    return os.getpid(), only_here(), i * i

def init(b):
    global barrier
    barrier = b

if __name__ == "__main__":
    method, kind, api = sys.argv[1:4]
    if api != "none":
        import perf_trampoline
        perf_trampoline.activate(children={"default": None, "on": True, "off": False}[api])
    ctx = multiprocessing.get_context(method)
    b = ctx.Barrier(4)
    if kind == "pool":
        with ctx.Pool(4, initializer=init, initargs=(b,)) as pool:
            results = pool.map(task, range(4), chunksize=1)
    else:
        with concurrent.futures.ProcessPoolExecutor(4, mp_context=ctx, initializer=init, initargs=(b,)) as ex:
            results = list(ex.map(task, range(4)))
    print(json.dumps({"parent": os.getpid(), "results": results}))
'''

HOW = {
    "plain": ([], {}),
    "runner": (["-m", "perf_trampoline"], {}),
    "runner-both": (["-m", "perf_trampoline", "--backend", "perf,perf_jit"], {}),
    "env": ([], {"PERF_TRAMPOLINE": "perf"}),
    "-X perf": (["-X", "perf"], {}),
    "PYTHONPERFSUPPORT": ([], {"PYTHONPERFSUPPORT": "1"}),
    "runner --no-children": (["-m", "perf_trampoline", "--no-children"], {}),
    "PERF_TRAMPOLINE_CHILDREN=0": ([], {"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_CHILDREN": "0"}),
    "-X perf, PERF_TRAMPOLINE_CHILDREN=0": (["-X", "perf"], {"PERF_TRAMPOLINE_CHILDREN": "0"}),
}


def run_tree(interp, work, how, method, kind, api="none"):
    """Runs TREE as `how` says (`api`: activate(children=...) in the program, "none": not
    called); returns (parent pid, {worker pid: (what it returned, its square)})."""
    if how in ("-X perf", "PYTHONPERFSUPPORT", "-X perf, PERF_TRAMPOLINE_CHILDREN=0") and interp.version >= (3, 12):
        pytest.skip("CPython %d.%d handles -X perf and PYTHONPERFSUPPORT itself" % interp.version[:2])
    prog = work / "tree.py"
    prog.write_text(TREE)
    args, env = HOW[how]
    out = interp.run(args + [str(prog), method, kind, api], env=dict(env, PERF_TRAMPOLINE_DIR=str(work)))
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout.decode().splitlines()[-1])
    workers = {pid: (value, square) for pid, value, square in report["results"]}
    assert len(workers) == 4, "four workers, one task each: %s" % report
    return report["parent"], workers


def results(workers):
    """What the workers computed, without their pids: whether only_here() returned the
    worker's own pid, and the square."""
    return sorted((value == pid, square) for pid, (value, square) in workers.items())


def plain_results(interp, work, method, kind):
    """What the workers compute with support nowhere."""
    return results(run_tree(interp, work, "plain", method, kind)[1])


def only_in(names):
    """The pids named by only_in_<pid> functions among these names."""
    return {int(n[len("py::only_in_"):].split(":")[0]) for n in names if n.startswith("py::only_in_")}


def files(work):
    return sorted(p.name for p in work.iterdir() if p.name.startswith(("perf-", "jit-")))


def check_each_worker_names_only_its_own(work, parent, workers, dumps=False):
    for pid in workers:
        assert only_in(names_in_map(work, pid)) == {pid}, "worker %d's map" % pid
        if dumps:
            header_pid, load_pids, names = dump_pids_and_names(work, pid)
            assert header_pid == pid and load_pids == {pid}
            assert only_in(names) == {pid}, "worker %d's dump" % pid
    # Every other process of the tree (the parent, a forkserver) names none of them.
    for path in work.glob("perf-*.map"):
        pid = int(path.name[5:-4])
        if pid not in workers:
            assert only_in(names_in_map(work, pid)) == set(), "%s holds a worker's function" % path.name
    parent_names = names_in_map(work, parent)
    assert parent_names, "the parent wrote no map"
    assert not any(n.startswith("py::task:") for n in parent_names), "a worker's entry in the parent's map"
    if dumps:
        assert not any("only_in_" in n or n.startswith("py::task:") for n in dump_pids_and_names(work, parent)[2])


@pytest.mark.parametrize("kind", ["pool", "executor"])
@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_runner_reaches_every_worker(interp, work, method, kind):
    parent, workers = run_tree(interp, work, "runner", method, kind)
    check_each_worker_names_only_its_own(work, parent, workers)
    assert results(workers) == plain_results(interp, work, method, kind)


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("how", ["runner-both", "env", "-X perf", "PYTHONPERFSUPPORT"])
def test_every_switch_reaches_every_worker(interp, work, how, method):
    parent, workers = run_tree(interp, work, how, method, "executor")
    check_each_worker_names_only_its_own(work, parent, workers, dumps=how == "runner-both")


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
@pytest.mark.parametrize("how", ["runner --no-children", "PERF_TRAMPOLINE_CHILDREN=0",
                                 "-X perf, PERF_TRAMPOLINE_CHILDREN=0"])
def test_opt_out_keeps_support_to_the_parent(interp, work, how, method):
    parent, workers = run_tree(interp, work, how, method, "executor")
    assert files(work) == ["perf-%d.map" % parent], "a child wrote a file"
    assert names_in_map(work, parent)
    assert results(workers) == plain_results(interp, work, method, "executor")


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.parametrize("children", ["default", "on", "off"])
def test_activate_children_from_code(interp, work, children, method):
    """activate() from code keeps what it always did unless asked: forked workers keep
    support, started ones get it only with children=True; children=False keeps it to itself."""
    parent, workers = run_tree(interp, work, "plain", method, "executor", api=children)
    if children == "on" or (children == "default" and method == "fork"):
        check_each_worker_names_only_its_own(work, parent, workers)
    else:
        assert files(work) == ["perf-%d.map" % parent], "a child wrote a file"


# A Python started by subprocess, then the same process exec'ing another Python.
CHILD = r'''
import os
namespace = {}
exec("def only_in_%d():\n    return 1\n" % os.getpid(), namespace)
namespace["only_in_%d" % os.getpid()]()
print(os.getpid(), flush=True)
'''

STARTER = r'''
import os, subprocess, sys
def before_exec():
    return 1
before_exec()
child = subprocess.run([sys.executable, sys.argv[1]], capture_output=True, check=True)
print(os.getpid(), int(child.stdout), flush=True)
os.execv(sys.executable, [sys.executable, sys.argv[1]])
'''


@pytest.mark.parametrize("how", ["runner-both", "env", "-X perf", "runner --no-children"])
def test_subprocess_and_execv_of_a_python(interp, work, how):
    if how == "-X perf" and interp.version >= (3, 12):
        pytest.skip("CPython %d.%d handles -X perf itself" % interp.version[:2])
    (work / "child.py").write_text(CHILD)
    (work / "starter.py").write_text(STARTER)
    args, env = HOW[how]
    out = interp.run(args + [str(work / "starter.py"), str(work / "child.py")],
                     env=dict(env, PERF_TRAMPOLINE_DIR=str(work)))
    assert out.returncode == 0, out.stderr.decode()
    (parent, child), (execd,) = [[int(x) for x in line.split()] for line in out.stdout.decode().splitlines()]
    assert execd == parent
    prog = str(work / "starter.py")
    if how == "runner --no-children":
        assert files(work) == ["perf-%d.map" % parent]
        assert only_in(names_in_map(work, parent)) == set(), "the exec'd Python had support"
        return
    assert only_in(names_in_map(work, child)) == {child}
    # The exec'd Python goes on in the map (and dump) of the same pid, after what came before.
    names = names_in_map(work, parent)
    assert only_in(names) == {parent} and "py::before_exec:" + prog in names
    assert names.index("py::before_exec:" + prog) < names.index("py::only_in_%d:<string>" % parent)
    if how == "runner-both":
        header_pid, load_pids, dump_names = dump_pids_and_names(work, parent)
        assert header_pid == parent and load_pids == {parent}
        assert "py::before_exec:" + prog in dump_names and "py::only_in_%d:<string>" % parent in dump_names
        assert only_in(dump_pids_and_names(work, child)[2]) == {child}


def test_bad_children_switch_prints_one_line_and_children_get_support(interp, work):
    (work / "child.py").write_text(CHILD)
    (work / "starter.py").write_text(STARTER.replace("os.execv", "0 and os.execv"))
    out = interp.run([str(work / "starter.py"), str(work / "child.py")],
                     env={"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_CHILDREN": "no", "PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and "PERF_TRAMPOLINE_CHILDREN='no' is not valid; accepted: 0, 1" in lines[0], lines
    parent, child = (int(x) for x in out.stdout.split())
    assert only_in(names_in_map(work, child)) == {child}
