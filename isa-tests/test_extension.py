"""The real extension on aarch64, riscv64 and s390x: isa-tests/guest.py runs in each ISA's
CPython under qemu-user with perf support on; these checks read what it reports.

isa-tests/extension.sh builds what they need into target/isa-ext/<isa>/ and runs them.
"""

import json
import os
import pathlib
import subprocess

import pytest

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parent
BUILT = TOP / "target" / "isa-ext"
ISAS = ["aarch64", "riscv64", "s390x"]
# Debian's usual interpreter, and one built with frame pointers (CPython's default from 3.15).
PYTHONS = ["python3.13", "python3.15"]
GUEST = str(HERE / "guest.py")
SEED = str(TOP / "examples" / "seed_example.py")


def named(function, path=GUEST):
    return "py::%s:%s" % (function, path)


@pytest.fixture(scope="module", params=[(i, p) for i in ISAS for p in PYTHONS], ids="-".join)
def run(request, tmp_path_factory):
    """One run of guest.py on this ISA and interpreter: its report, with the perf map parsed."""
    isa, python = request.param
    root, site = BUILT / isa / "root", BUILT / isa / "site"
    if not (site / "perf_trampoline" / "_native.abi3.so").exists():
        pytest.fail("nothing built for %s: run isa-tests/extension.sh" % isa)
    work = tmp_path_factory.mktemp(isa + python)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_TRAMPOLINE", "PYTHON"))}
    env.update(PYTHONPATH="%s:%s" % (site, TOP / "examples"), PERF_TRAMPOLINE_DIR=str(work),
               PYTHONDONTWRITEBYTECODE="1")
    # qemu-user is started explicitly: binfmt_misc need not be mounted.
    proc = subprocess.run(["qemu-%s" % isa, "-L", str(root), str(root / "usr" / "bin" / python), GUEST], env=env, cwd=str(work),
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    report = json.loads(proc.stdout)
    report["isa"], report["python"] = isa, python
    report["map_entries"] = map_entries(work / ("perf-%d.map" % report["pid"]))
    report["work"] = work
    return report


def map_entries(path, blank_lines_allowed=False):
    """(start, size, name) per line of a perf map; a line of any other form fails the test."""
    entries = []
    for line in path.read_text().splitlines():
        if blank_lines_allowed and not line:
            continue
        start, size, name = line.split(" ", 2)
        entries.append((int(start, 16), int(size, 16), name))
    return entries


def test_results_identical_with_and_without_support(run):
    assert run["with"] == run["without"]
    assert run["fork"]["report"]["semantics"] == run["without"]


def test_perf_map_one_line_per_code_object(run):
    names = [name for _, _, name in run["map_entries"]]
    assert len(names) == run["slots_created"]
    expected = [named(f, SEED) for f in ["foo", "bar", "baz"]]
    expected += [named(f) for f in ["semantics", "semantics.<locals>.fib", "inner_walk", "outer_walk"]]
    for name in expected:
        assert names.count(name) == 1, (name, names)
    # Code that first ran in the forked child is in the child's map, not the parent's.
    assert named("child_only") not in names


def test_perf_map_addresses_in_executable_mappings(run):
    maps = run["maps"]
    for start, size, name in run["map_entries"]:
        assert size > 0, name
        assert any(lo <= start and start + size <= hi for lo, hi, _ in maps), \
            "%s at %#x+%#x is in no executable mapping of the process" % (name, start, size)


def test_perf_map_entries_do_not_overlap(run):
    entries = sorted(run["map_entries"])
    for (a, a_size, a_name), (b, _, b_name) in zip(entries, entries[1:]):
        assert a + a_size <= b, "%s overlaps %s" % (a_name, b_name)


def test_jitdump_parses_with_this_isas_machine(run):
    dump = run["jitdump"]
    assert dump is not None, run["outputs"]
    assert dump["header"]["elf_mach"] == run["elf_machine"]
    assert dump["header"]["pid"] == run["pid"]


def test_jitdump_unwind_record_before_each_load(run):
    records = run["jitdump"]["records"]
    loads = [i for i, r in enumerate(records) if r["kind"] == "load"]
    assert loads
    for i in loads:
        assert i > 0 and records[i - 1]["kind"] == "unwinding", records[i]["name"]
    # The dump names the same code at the same addresses as the map.
    in_dump = sorted((r["code_addr"], r["name"]) for r in records if r["kind"] == "load")
    assert in_dump == sorted((start, name) for start, _, name in run["map_entries"])


def test_forked_child_names_its_own_code(run):
    fork = run["fork"]
    assert fork["exit"] == 0
    # The child leaves with os._exit(), which skips the exit handler that cuts the map's
    # preallocated room (blank lines, which perf skips) off.
    child_map = run["work"] / ("perf-%d.map" % fork["pid"])
    names = [name for _, _, name in map_entries(child_map, blank_lines_allowed=True)]
    assert names.count(named("child_only")) == 1


def test_frame_pointer_walk_passes_the_trampolines_in_call_order(run):
    if "walk" not in run:
        pytest.fail("the module was built without the frame-walk feature")
    names = []
    for address in run["walk"]:
        for start, size, name in run["map_entries"]:
            # A return address lies inside its trampoline, never at its start.
            if start < address < start + size:
                names.append(name)
    # The walk crosses CPython's evaluator between two trampolines: it needs frame records
    # there too (s390x: the back chain, which gcc writes only with -mbackchain).
    needed = "-mbackchain" if run["isa"] == "s390x" else "-fno-omit-frame-pointer"
    if not names and needed not in run["cflags"].split():
        pytest.skip("%s on %s is built without %s: no frame-pointer walk (perf -g's included) gets "
                    "past its evaluator" % (run["python"], run["isa"], needed))
    # main() was already running when support came on: its frame has no trampoline.
    assert names == [named("inner_walk"), named("outer_walk")], \
        "walk %s reached %s" % ([hex(a) for a in run["walk"]], names)
