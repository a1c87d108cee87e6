"""samply, the perf-event recorder whose profiles open in the Firefox Profiler, records
``python -m perf_trampoline seed_example.py`` (perf map backend) as a new user would, and its
saved profile names and nests foo < bar < baz: on sid's 3.15 (frame pointers) and 3.14 (none).

samply runs inside the Debian root beside the interpreter. It unwinds each sample while it
records, with the CFI of the files it finds at the paths the process mapped: run on the host
it would read the host's files at those paths (another libc, no python3.14) and 3.14's chains
would stop at foo. It reads ``/tmp/perf-PID.map`` once the process has exited, so the map must
still be there then (the root's /tmp is the host's, mounted by scripts/in-root.sh).
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
    its own message instead of falling back to cpu-clock (even as root). Other checkouts' runs
    of this test take the same lock, so none restores a value another one lowered."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / "perf_event_paranoid.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        level = int(PARANOID.read_text())
        if level > 1 and not os.access(PARANOID, os.W_OK):
            pytest.skip("kernel.perf_event_paranoid is %d and samply needs 1 here: only root may lower it" % level)
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


def interpreter_thread(profile):
    """The interpreter's main thread. samply's first "process" is its own fork before the exec;
    each exec makes the same pid a new one ("PID.1", ...) named from its command (a wrapper's
    exec chain may leave short-lived python ones too: the interpreter's has the samples)."""
    threads = [t for t in profile["threads"] if t["isMainThread"] and t["processName"].startswith("python")]
    assert threads, [(t["processName"], t["pid"]) for t in profile["threads"]]
    return max(threads, key=lambda t: t["samples"]["length"])


@pytest.mark.parametrize("sid", CASES)
def test_samply_names_and_nests_the_seed_chain(sid, work):
    if not SAMPLY.exists():
        pytest.skip("samply %s is not installed at %s: run scripts/install-deps.sh" % (SAMPLY_VERSION, SAMPLY))
    prog = copy_example("seed_example.py", work)
    # The root sees /tmp (and so ``work``), not the cache samply is built into: a hard link
    # costs nothing where both are on one file system.
    samply = work / "samply"
    try:
        os.link(SAMPLY, samply)
    except OSError:
        shutil.copy(SAMPLY, samply)
    out = work / "profile.json.gz"
    with paranoid_at_most_1():
        rec = subprocess.run(sid.wrap + [str(samply), "record", "--save-only", "-o", str(out), "--"] + sid.python
                             + ["-m", "perf_trampoline", str(prog), ITERATIONS], cwd=work, capture_output=True,
                             timeout=120)
    assert rec.returncode == 0, rec.stderr.decode()
    thread = interpreter_thread(load_profile(out))
    perf_map = pathlib.Path("/tmp/perf-%s.map" % str(thread["pid"]).split(".")[0])
    try:
        assert perf_map.exists(), "samply names our frames from %s" % perf_map
    finally:
        perf_map.unlink(missing_ok=True)

    # Every sample of the thread counts, start-up and exit included (as the perf tests count).
    full = []
    for weight, names in weighted_stacks(thread, thread["stringArray"]):
        chain = python_chain(names)[: len(SEED_CHAIN)]
        full.append((weight, [q for q, _ in chain] == SEED_CHAIN and all(f == str(prog) for _, f in chain)))
    total = sum(w for w, _ in full)
    hits = sum(w for w, ok in full if ok)
    assert total >= 300, "too few samples to judge: %d" % total
    # For the record: the share in foo's loop, from the first to the last sample with the chain.
    flags = [ok for _, ok in full]
    loop = full[flags.index(True):len(flags) - flags[::-1].index(True)] if hits else []
    note("samply", {"interp": sid.name, "chain": hits / total, "samples": total,
                    "chain_in_loop": hits / max(1, sum(w for w, _ in loop))})
    assert hits / total >= 0.9, "%d of %d samples carry foo < bar < baz < <module>" % (hits, total)
