"""samply, the perf-event recorder whose profiles open in the Firefox Profiler, records
``python -m perf_trampoline seed_example.py`` (perf map backend) as a new user would, and its
saved profile names and nests foo < bar < baz: on sid's 3.15 (frame pointers) and 3.14 (none).

samply runs inside the Debian root beside the interpreter: it unwinds each sample when it
records, reading the libraries by the paths the process sees (libpython's CFI on 3.14), and
reads ``/tmp/perf-PID.map`` when the process has exited (the root's /tmp is the host's).
"""

import contextlib
import fcntl
import gzip
import json
import os
import pathlib
import shutil
import subprocess

import pytest
from conftest import INTERPRETERS, copy_example
from perf_trampoline.stacks import python_chain
from test_unwind import note

SAMPLY_VERSION = "0.13.1"
CACHE = pathlib.Path(os.environ.get("PERF_TRAMPOLINE_CACHE") or pathlib.Path.home() / ".cache" / "perf-trampoline")
SAMPLY = CACHE / ("samply-%s" % SAMPLY_VERSION) / "bin" / "samply"
PARANOID = pathlib.Path("/proc/sys/kernel/perf_event_paranoid")
SEED_CHAIN = ["foo", "bar", "baz", "<module>"]  # innermost first
ITERATIONS = "30000000"
CASES = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name in ("sid-3.15", "sid-3.14")] or [
    pytest.param(None, marks=pytest.mark.skip(reason="no sid-3.15/sid-3.14: run scripts/test-interpreters.sh"))]


@contextlib.contextmanager
def paranoid_at_most_1():
    """kernel.perf_event_paranoid at 1 or lower while the block runs, then as it was. samply
    tries the hardware cycles counter first; this VM has none, and above 1 samply stops with
    its own message instead of falling back to cpu-clock. Other checkouts' runs of this test
    take the same lock, so none restores a value another one lowered."""
    with open(CACHE / "perf_event_paranoid.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        level = int(PARANOID.read_text())
        if level > 1:
            PARANOID.write_text("1")
        try:
            yield
        finally:
            if level > 1:
                PARANOID.write_text(str(level))


def load_profile(path):
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def weighted_stacks(thread, strings):
    """(weight, [function name, ...] innermost first) of each of the thread's samples, from the
    processed profile's tables: sample -> stack -> (prefix, frame) -> func -> name."""
    stacks, frames, funcs = thread["stackTable"], thread["frameTable"], thread["funcTable"]
    samples = thread["samples"]
    weights = samples.get("weight") or [1] * samples["length"]
    for stack, weight in zip(samples["stack"], weights):
        names = []
        while stack is not None:
            names.append(strings[funcs["name"][frames["func"][stacks["frame"][stack]]]])
            stack = stacks["prefix"][stack]
        yield (1 if weight is None else weight), names


@pytest.mark.parametrize("sid", CASES)
def test_samply_names_and_nests_the_seed_chain(sid, work):
    if not SAMPLY.exists():
        pytest.skip("samply %s is not installed at %s: run scripts/install-deps.sh" % (SAMPLY_VERSION, SAMPLY))
    if not PARANOID.exists() or os.geteuid() != 0:
        pytest.skip("lowering kernel.perf_event_paranoid for samply needs root")
    prog = copy_example("seed_example.py", work)
    # The root sees /tmp (and so ``work``), not the cache samply is built into.
    samply = shutil.copy(SAMPLY, work / "samply")
    out = work / "profile.json.gz"
    with paranoid_at_most_1():
        rec = subprocess.run(sid.wrap + [samply, "record", "--save-only", "-o", str(out), "--"] + sid.python
                             + ["-m", "perf_trampoline", str(prog), ITERATIONS], cwd=work, capture_output=True,
                             timeout=120)
    assert rec.returncode == 0, rec.stderr.decode()
    profile = load_profile(out)

    # samply's first "process" is its own fork before the exec; each exec makes the same pid a
    # new one ("PID.1", ...), named from its command: the interpreter's is the python one that
    # ran (a wrapper's exec chain may make short-lived others).
    threads = [t for t in profile["threads"] if t["isMainThread"] and t["processName"].startswith("python")]
    assert threads, [(t["processName"], t["pid"]) for t in profile["threads"]]
    thread = max(threads, key=lambda t: t["samples"]["length"])
    perf_map = pathlib.Path("/tmp/perf-%s.map" % str(thread["pid"]).split(".")[0])
    assert perf_map.exists(), "samply names our frames from %s" % perf_map
    perf_map.unlink()
    strings = thread["stringArray"]
    hits = total = 0
    for weight, names in weighted_stacks(thread, strings):
        total += weight
        chain = python_chain(names)[: len(SEED_CHAIN)]
        if [q for q, _ in chain] == SEED_CHAIN and all(f == str(prog) for _, f in chain):
            hits += weight
    assert total >= 300, "too few samples to judge: %d" % total
    note("samply", {"interp": sid.name, "chain": hits / total, "samples": total})
    assert hits / total >= 0.9, "%d of %d samples carry foo < bar < baz < <module>" % (hits, total)
