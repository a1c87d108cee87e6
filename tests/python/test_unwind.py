"""`record`'s default mode (perf map + `--call-graph dwarf`, unwound by src/perfdata/) on real
perf and real interpreters: native libraries under their Python callers, the seed example's
chain next to the older modes' on the same interpreter, `report` of hand-made recordings."""

import json
import pathlib
import shutil
import time

import pytest
from conftest import INTERPRETERS, ROOT, copy_example, named_for, recorded_pids
from test_cli import SEED_CHAIN, busy_program, cli, folded_stacks, qualnames, remove_leftovers
from test_jitdump import start_long_running

HERE = pathlib.Path(__file__).resolve().parent
ARTEFACTS = ROOT / "target" / "test-artefacts"


def old_mode(interp):
    """The mode `record` chose before this one: fp with frame pointers, else dwarf."""
    return "fp" if interp.has_frame_pointers() else "dwarf"


def share(stacks, predicate):
    total = sum(stacks.values())
    assert total >= 300, "too few samples to judge: %d" % total
    return sum(n for stack, n in stacks.items() if predicate(stack)) / total


def note(name, figures):
    """Keeps the measured shares for the record (benches/README.md quotes them)."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with open(ARTEFACTS / "unwind-shares.jsonl", "a") as f:
        f.write(json.dumps(dict(figures, test=name)) + "\n")


def record_folded(interp, work, mode, prog, args, native=False):
    """Folded stacks of ``record [--mode MODE] [--native] -- python prog args``."""
    out = "%s.svg" % (mode or "default")
    options = (["--mode", mode] if mode else []) + (["--native"] if native else [])
    status, stdout, stderr = cli(interp, ["record", "-o", out] + options + ["--"] + interp.python
                                 + [str(prog)] + args, work)
    assert status == 0, stderr
    assert "perf-trampoline: mode %s " % (mode or "unwind") in stderr, stderr
    return folded_stacks(work / out.replace(".svg", ".folded"))


def test_native_libraries_sit_under_their_python_callers(interp, work):
    prog = work / "native_mix.py"
    shutil.copy(HERE / "native_mix.py", prog)
    zlib_chain = ["<module>", "main", "compress_blobs"]

    def figures(stacks):
        return {"python": share(stacks, lambda s: any(f.startswith("py::") for f in s)),
                "zlib": share(stacks, lambda s: qualnames(s, str(prog)) == zlib_chain)}

    new = record_folded(interp, work, None, prog, ["5"], native=True)
    got = figures(new)
    # The C functions themselves, named from libz's symbols, under compress_blobs: nearly
    # every sample inside zlib's deflate() keeps its Python callers.
    in_deflate = {stack: n for stack, n in new.items() if "deflate" in stack}
    assert share(in_deflate, lambda s: qualnames(s, str(prog)) == zlib_chain) >= 0.95
    assert got["python"] >= 0.9, got
    figures_line = {"interpreter": interp.name, "unwind": got}
    if interp.perf_version() >= (6, 0):
        figures_line["dwarf"] = figures(record_folded(interp, work, "dwarf", prog, ["5"], native=True))
    if interp.has_frame_pointers():
        # What record chose here before: frame pointers stop at libz (built without them).
        figures_line["fp"] = figures(record_folded(interp, work, "fp", prog, ["5"], native=True))
    note("native_mix", figures_line)
    if "fp" in figures_line:
        assert got["zlib"] >= figures_line["fp"]["zlib"], figures_line
    if "dwarf" in figures_line:
        assert got["zlib"] >= 0.9 * figures_line["dwarf"]["zlib"], figures_line
    else:
        # perf 5.10's jitdump path cannot unwind through jitted code (see checks.py): there
        # is nothing to compare with, but the zlib part must be there.
        assert got["zlib"] >= 0.1, figures_line


def test_seed_chain_as_good_as_the_older_modes(interp, work):
    seed = copy_example("seed_example.py", work)

    def chain(stacks):
        return share(stacks, lambda s: qualnames(s, str(seed)) == SEED_CHAIN)

    new = chain(record_folded(interp, work, None, seed, ["40000000"]))
    old = chain(record_folded(interp, work, old_mode(interp), seed, ["40000000"]))
    note("seed_chain", {"interpreter": interp.name, "unwind": new, old_mode(interp): old})
    assert new >= 0.9, (new, old)
    # Same or better, give or take sampling noise.
    assert new >= old - 0.03, (new, old)


# Calls a new code object (template's, renamed) over and over for argv[1] seconds.
NEW_CODE = r'''
import os, sys, time, types
def template():
    return 1
print(os.getpid(), flush=True)
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    types.FunctionType(template.__code__.replace(co_name="f%d" % n), {})()
    n += 1
'''

HOST_311 = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name == "host-3.11"] or [
    pytest.param(None, marks=pytest.mark.skip(reason="host-3.11 missing: run scripts/test-interpreters.sh"))]


@pytest.mark.parametrize("host_interp", HOST_311)
def test_native_frames_name_our_own_rust_functions(host_interp, work):
    """The wheel's module keeps its symbol table (Cargo.toml: the release profile strips debug
    info only), so --native shows our functions by their Rust names. The first call of every
    new code object goes from the hook to its path for new code, which is never inlined
    (hook.rs: slot_for_new_code): a program making new code all the time has samples there."""
    prog = work / "new_code.py"
    prog.write_text(NEW_CODE)
    status, stdout, stderr = cli(host_interp, ["record", "--native", "-o", "rust.svg", "--"] + host_interp.python
                                 + [str(prog), "0.5"], work)
    remove_leftovers(int(stdout.split()[0]))
    assert status == 0, stderr
    stacks = folded_stacks(work / "rust.folded")
    path = ("perf_trampoline::python::hook::eval_hook", "perf_trampoline::python::hook::slot_for_new_code")
    hits = sum(n for stack, n in stacks.items() if any(stack[i:i + 2] == path for i in range(len(stack) - 1)))
    ours = sorted({f for stack in stacks for f in stack
                   if not f.startswith("py::") and ("perf_trampoline" in f or "_native" in f)})
    assert hits > 0, "no sample shows %s < %s; frames of our module: %s" % (path[1], path[0], ours[:20])


KILLED_SEED = '''
import os, signal
os.kill(os.getpid(), signal.SIGKILL)
'''


def test_report_unwinds_a_recording_made_by_hand(interp, work):
    """perf record --call-graph dwarf by hand, with the perf map only, of a target that dies
    by SIGKILL (its map keeps the blank lines of its unused room): report unwinds it."""
    seed = copy_example("seed_example.py", work)
    seed.write_text(seed.read_text() + KILLED_SEED)
    data = work / "perf.data"
    since = time.time()
    rec = interp.perf(["record", "-F", "999", "--call-graph", "dwarf,16384", "-q", "-o", str(data), "--",
                       "env", "PERF_TRAMPOLINE=perf"] + interp.python + [str(seed), "40000000"], cwd=work)
    assert data.exists(), rec.stderr.decode()
    status, stdout, stderr = cli(interp, ["report", str(data), "-o", "hand.svg"], work)
    # perf reads maps from /tmp only: the killed process's is there, named for its pid.
    maps = [pathlib.Path(p) for pid in recorded_pids(interp, data, work) for p in named_for(pid, since)
            if p.endswith(".map")]
    try:
        assert status == 0, stderr
        assert "unwinding: " in stderr and "perf script" not in stderr, stderr
        assert any(m.read_text().endswith("\n\n") for m in maps), "the killed process's map keeps its room"
        stacks = folded_stacks(work / "hand.folded")
        assert share(stacks, lambda s: qualnames(s, str(seed)) == SEED_CHAIN) >= 0.9
    finally:
        for m in maps:
            m.unlink()


def test_report_of_a_running_program_perf_attached_to(interp, work):
    """perf record -p attaches to a program already running: perf describes its mappings
    (the trampolines' anonymous memory among them) from /proc, and report unwinds it."""
    prog, stop, pid = start_long_running(interp, work, "perf")
    try:
        rec = interp.perf(["record", "-F", "999", "--call-graph", "dwarf", "-q", "-p", str(pid),
                           "-o", str(work / "perf.data"), "--", "sleep", "1"], cwd=work)
        assert rec.returncode == 0, rec.stderr.decode()
        status, stdout, stderr = cli(interp, ["report", "perf.data", "-o", "attached.svg"], work)
        assert status == 0, stderr
        assert prog.poll() is None, "the program must still be running"
        stacks = folded_stacks(work / "attached.folded")
        # As the jitdump path's test of the same program asks (the loop itself is <module>'s).
        assert share(stacks, lambda s: qualnames(s, str(work / "long.py")) == ["<module>", "early_bird"]) >= 0.5
    finally:
        stop.touch()
        prog.wait(timeout=120)
        pathlib.Path("/tmp/perf-%d.map" % pid).unlink(missing_ok=True)


FORKING = r'''
import os, sys
import seed_example
pid = os.fork()
if pid == 0:
    seed_example.baz(int(sys.argv[1]))
    os._exit(0)
print(os.getpid(), pid, flush=True)
os.waitpid(pid, 0)
'''


def test_forked_child_is_unwound_and_named(interp, work):
    seed = copy_example("seed_example.py", work)
    prog = work / "forking.py"
    prog.write_text(FORKING)
    status, stdout, stderr = cli(interp, ["record", "-o", "fork.svg", "--"] + interp.python + [str(prog), "30000000"],
                                 work)
    for pid in stdout.splitlines()[0].split():
        remove_leftovers(int(pid))
    assert status == 0, stderr
    stacks = folded_stacks(work / "fork.folded")
    # Only the child works (the parent waits): its samples carry the seed's chain.
    assert share(stacks, lambda s: qualnames(s, str(seed)) == ["baz", "bar", "foo"]) >= 0.9


def test_unwinder_names_a_file_it_cannot_read(work):
    from perf_trampoline._native import perf_data_has_user_stacks, unwind_perf_data

    bogus = work / "bogus.data"
    bogus.write_bytes(b"PERFILE2" + bytes(range(256)) * 2)
    for call in (lambda: unwind_perf_data(str(bogus), print), lambda: perf_data_has_user_stacks(str(bogus))):
        with pytest.raises(ValueError) as e:
            call()
        message = str(e.value)
        assert message.startswith(str(bogus) + ": not a perf.data file") and "\n" not in message, message
    with pytest.raises(ValueError, match="No such file"):
        unwind_perf_data(str(work / "missing.data"), print)


def test_report_of_a_compressed_recording_says_so(interp, work):
    """perf record -z: the unwinder reads no zstd; report says how to record instead."""
    data = work / "z.data"
    rec = interp.perf(["record", "-q", "-z", "--call-graph", "dwarf", "-o", str(data), "--", "true"], cwd=work)
    if rec.returncode != 0:
        pytest.skip("this perf cannot record with -z: %s" % rec.stderr.decode(errors="replace").strip().splitlines()[0])
    status, stdout, stderr = cli(interp, ["report", str(data), "-o", "z.svg"], work)
    assert status == 2, stderr
    assert stderr.strip() == "perf-trampoline: %s: recorded compressed (perf record -z); record it without -z" % data


def test_perf_trampoline_dir_is_ignored_for_the_perf_map(interp, work):
    """The unwinder reads perf maps where perf would, /tmp: a PERF_TRAMPOLINE_DIR meant for
    jitdumps must not send the map elsewhere."""
    prog = busy_program(work)
    status, stdout, stderr = cli(interp, ["record", "-o", "dir.svg", "--"] + interp.python + [prog, "1", "exit"],
                                 work, env={"PERF_TRAMPOLINE_DIR": str(work)})
    remove_leftovers(int(stdout.split()[0]))
    assert status == 0, stderr
    assert "PERF_TRAMPOLINE_DIR ignored: perf maps are read from /tmp only" in stderr
    assert share(folded_stacks(work / "dir.folded"), lambda s: qualnames(s, prog) == ["<module>", "busy", "spin"]) >= 0.9
