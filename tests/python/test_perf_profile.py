"""`perf record -g` on an interpreter built with frame pointers shows the Python call chain."""

import pathlib

import pytest
from conftest import copy_example
from perf_trampoline.stacks import chain_share


def record_runner(interp, work, args):
    """`perf record -g` of ``python -m perf_trampoline args``; returns perf script's text and
    removes the maps of the recorded processes."""
    data = work / "perf.data"
    rec = interp.perf(["record", "-F", "999", "-g", "-q", "-o", str(data), "--"]
                      + interp.python + ["-m", "perf_trampoline"] + args, cwd=work)
    assert rec.returncode == 0, rec.stderr.decode()
    script = interp.perf(["script", "--no-inline", "-i", str(data)], cwd=work)
    assert script.returncode == 0, script.stderr.decode()
    text = script.stdout.decode(errors="replace")
    for pid in {line.split()[1] for line in text.splitlines() if line and not line[0].isspace()}:
        if pid.isdigit():
            pathlib.Path("/tmp/perf-%s.map" % pid).unlink(missing_ok=True)
    return text


def test_seed_example_chain_under_perf_record_g(interp, work):
    if not interp.has_frame_pointers():
        pytest.skip("%s is built without frame pointers: perf record -g cannot walk it "
                    "(the jitdump + DWARF workflow covers it)" % interp.name)
    seed = copy_example("seed_example.py", work)
    text = record_runner(interp, work, [str(seed), "60000000"])
    hits, total = chain_share(text, ["foo", "bar", "baz", "<module>"], filename=str(seed))
    assert total >= 300, "too few samples to judge: %d" % total
    assert hits >= 0.9 * total, "%d of %d samples show foo < bar < baz < <module>" % (hits, total)


def test_perf_reads_the_map_of_a_process_killed_with_sigkill(interp, work):
    """No exit handler runs: the map keeps the blank lines of its unused room after the
    records, and perf must still name every sample's Python frames from it."""
    if not interp.has_frame_pointers():
        pytest.skip("%s is built without frame pointers: perf record -g cannot walk it "
                    "(the jitdump + DWARF workflow covers it)" % interp.name)
    # The seed example, ending in a SIGKILL of itself once its work is done.
    prog = copy_example("seed_example.py", work)
    prog.write_text(prog.read_text() + "\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    data = work / "perf.data"
    rec = interp.perf(["record", "-F", "999", "-g", "-q", "-o", str(data), "--", "env", "PERF_TRAMPOLINE=perf"]
                      + interp.python + [str(prog), "40000000"], cwd=work)
    assert data.exists(), rec.stderr.decode()
    script = interp.perf(["script", "--no-inline", "-i", str(data)], cwd=work)
    assert script.returncode == 0, script.stderr.decode()
    text = script.stdout.decode(errors="replace")
    pids = {line.split()[1] for line in text.splitlines() if line and not line[0].isspace()}
    maps = [pathlib.Path("/tmp/perf-%s.map" % pid) for pid in pids if pid.isdigit()]
    try:
        python_map = [m for m in maps if m.exists() and "py::foo:" in m.read_text()]
        assert len(python_map) == 1, "no map names foo: %s" % maps
        body = python_map[0].read_text()
        assert body.endswith("\n\n"), "the killed process's map should keep its blank room"
    finally:
        for m in maps:
            m.unlink(missing_ok=True)
    hits, total = chain_share(text, ["foo", "bar", "baz", "<module>"], filename=str(prog))
    assert total >= 300, "too few samples to judge: %d" % total
    assert hits >= 0.9 * total, "%d of %d samples show foo < bar < baz < <module>" % (hits, total)


# Long to compile (about half a second), then busy in a function of its own.
SLOW_TO_COMPILE = "".join("x%d = [%d] * 3\n" % (i, i) for i in range(40000)) + r'''
import time
def spin():
    end = time.time() + 0.5
    while time.time() < end:
        pass
spin()
'''


def test_no_frame_of_the_runner_in_the_profile(interp, work):
    """The runner compiles the script before support goes on: samples taken while it does
    (or anywhere else) show no frame of perf_trampoline's own, and the program's stacks start
    at its own <module>."""
    if not interp.has_frame_pointers():
        pytest.skip("%s is built without frame pointers: perf record -g cannot walk it "
                    "(the map-based test in test_switches.py covers it)" % interp.name)
    prog = work / "slow_to_compile.py"
    prog.write_text(SLOW_TO_COMPILE)
    text = record_runner(interp, work, [str(prog)])
    samples = [s for s in text.split("\n\n") if s.strip()]
    python_stacks = [[f.split()[1].rsplit("+0x", 1)[0] for f in s.splitlines()[1:] if " py::" in f] for s in samples]
    python_stacks = [st for st in python_stacks if st]
    assert len(samples) >= 500 and len(python_stacks) >= 300, (len(samples), len(python_stacks))
    ours = [f for st in python_stacks for f in st if "/perf_trampoline/" in f]
    assert not ours, "frames of the runner in the profile: %s" % sorted(set(ours))
    outermost = {st[-1] for st in python_stacks}
    assert outermost == {"py::<module>:%s" % prog}, outermost
