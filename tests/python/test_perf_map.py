"""The perf map: one line per executed code object, in perf's format, at executable
anonymous addresses that no other entry shares."""

import collections
import json
import re

import pytest
from conftest import ROOT
from perf_trampoline import STRATEGIES

LINE = re.compile(r"^([0-9a-f]+) ([0-9a-f]+) (py::.*)$")


def exec_anon_ranges(maps_text):
    ranges = []
    for line in maps_text.splitlines():
        fields = line.split()
        if len(fields) == 5 and "x" in fields[1]:  # no pathname: anonymous
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((lo, hi))
    return ranges


@pytest.mark.parametrize("strategy", ["stamp", "compile-each"])
def test_one_line_per_executed_code_object_at_executable_anonymous_addresses(interp, work, strategy):
    if strategy not in STRATEGIES:
        pytest.skip("the wheel's module is built without Cranelift: compile-each is the Rust benches' "
                    "baseline (cargo bench), tested there")
    probe = work / "probe_map.py"
    probe.write_text((ROOT / "tests" / "python" / "probe_map.py").read_text())
    out = interp.run([str(probe), strategy], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)

    # Read while the program runs: the records, then only the blank lines of the writer's
    # room (perf skips them; they are cut off at exit).
    text = report["perf_map"]
    records = text.rstrip("\n")
    assert text[len(records):].count("\n") == len(text) - len(records)
    entries = []
    for line in records.splitlines():
        m = LINE.match(line)
        assert m, "not a perf map line: %r" % line
        entries.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))

    assert collections.Counter(n for _, _, n in entries) == collections.Counter(report["expected"])
    assert report["state"]["slots_created"] == len(entries)
    # The names above were read straight out of the code objects (found at activation).
    assert report["state"]["names_by_offset"] is True
    assert len(entries) >= 10  # the workload runs at least this many distinct code objects

    ranges = exec_anon_ranges(report["maps"])
    for addr, size, name in entries:
        assert size > 0
        assert any(lo <= addr and addr + size <= hi for lo, hi in ranges), \
            "%s at %x+%x is not inside an executable anonymous mapping" % (name, addr, size)
    spans = sorted((a, a + s) for a, s, _ in entries)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, "overlapping entries"


KILLED = r'''
import os, signal, sys
def work(n):
    return sum(range(n))
for i in range(int(sys.argv[2])):
    exec("def f%d():\n    return work(10)\nf%d()" % (i, i))
print(os.getpid(), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
'''


@pytest.mark.parametrize("how", ["exit", "kill"])
@pytest.mark.parametrize("functions", [50, 5000])
def test_every_line_is_in_the_map_after_exit_and_after_sigkill(interp, work, how, functions):
    """Records go into a shared mapping of the file, not through write(2): a process killed
    right after its code ran must still have all of them in the file. 5,000 functions need
    several rounds of new room."""
    script = work / "killed.py"
    script.write_text(KILLED)
    out = interp.run([str(script), how, str(functions)],
                     env={"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == (-9 if how == "kill" else 0), out.stderr.decode()
    pid = int(out.stdout.split()[0])
    text = (work / ("perf-%d.map" % pid)).read_text()
    records = text.rstrip("\n") + "\n"
    room = text[len(records):]
    if how == "exit":
        assert room == "", "the unused room is cut off at a normal exit"
    else:
        assert room and room.count("\n") == len(room), "after SIGKILL only blank lines follow the records"
    names = collections.Counter()
    for line in records.splitlines():
        m = LINE.match(line)
        assert m, "not a perf map line: %r" % line
        names[m.group(3).split(":")[2]] += 1
    expected = collections.Counter("f%d" % i for i in range(functions))
    expected["work"] = 1
    assert names & expected == expected, "missing: %s" % sorted((expected - names).elements())[:10]
