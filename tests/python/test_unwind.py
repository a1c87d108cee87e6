"""`record`'s default mode (perf map + `--call-graph dwarf`, unwound by src/perfdata/) on real
perf and real interpreters: native libraries under their Python callers, the seed example's
chain next to the older modes' on the same interpreter, `report` of hand-made recordings."""

import json
import os
import pathlib
import shutil

import pytest

from conftest import ROOT, copy_example
from test_cli import SEED_CHAIN, cli, folded_stacks, qualnames, remove_leftovers

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

    new = record_folded(interp, work, None, prog, ["3"], native=True)
    got = figures(new)
    # The C functions themselves, named from libz's symbols, under compress_blobs.
    caller = "py::compress_blobs:%s" % prog
    assert any("deflate" in stack[stack.index(caller):] for stack in new if caller in stack)
    assert got["python"] >= 0.9, got
    figures_line = {"interpreter": interp.name, "unwind": got}
    if interp.perf_version() >= (6, 0):
        old = figures(record_folded(interp, work, "dwarf", prog, ["3"], native=True))
        figures_line["dwarf"] = old
        note("native_mix", figures_line)
        assert got["zlib"] >= 0.9 * old["zlib"], figures_line
    else:
        note("native_mix", figures_line)
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
    rec = interp.perf(["record", "-F", "999", "--call-graph", "dwarf,16384", "-q", "-o", str(data), "--",
                       "env", "PERF_TRAMPOLINE=perf"] + interp.python + [str(seed), "40000000"], cwd=work)
    assert data.exists(), rec.stderr.decode()
    status, stdout, stderr = cli(interp, ["report", str(data), "-o", "hand.svg"], work)
    maps = [p for p in pathlib.Path("/tmp").glob("perf-*.map") if str(seed) in p.read_text(errors="replace")]
    try:
        assert status == 0, stderr
        assert "unwinding: " in stderr and "perf script" not in stderr, stderr
        assert any(m.read_text().endswith("\n\n") for m in maps), "the killed process's map keeps its room"
        stacks = folded_stacks(work / "hand.folded")
        assert share(stacks, lambda s: qualnames(s, str(seed)) == SEED_CHAIN) >= 0.9
    finally:
        for m in maps:
            m.unlink()


FORKING = r'''
import os, sys
def spin(n):
    x = 0
    for _ in range(n):
        x += 1
    return x
def child_work(n):
    return spin(n)
pid = os.fork()
if pid == 0:
    child_work(int(sys.argv[1]))
    os._exit(0)
print(os.getpid(), pid, flush=True)
os.waitpid(pid, 0)
'''


def test_forked_child_is_unwound_and_named(interp, work):
    prog = work / "forking.py"
    prog.write_text(FORKING)
    status, stdout, stderr = cli(interp, ["record", "-o", "fork.svg", "--"] + interp.python + [str(prog), "30000000"],
                                 work)
    for pid in stdout.splitlines()[0].split():
        remove_leftovers(int(pid))
    assert status == 0, stderr
    stacks = folded_stacks(work / "fork.folded")
    assert share(stacks, lambda s: qualnames(s, str(prog)) == ["<module>", "child_work", "spin"]) >= 0.9


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
