"""The perf map: one line per executed code object, in perf's format, at executable
anonymous addresses that no other entry shares."""

import collections
import json
import re

import pytest

from conftest import ROOT

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
    probe = work / "probe_map.py"
    probe.write_text((ROOT / "tests" / "python" / "probe_map.py").read_text())
    out = interp.run([str(probe), strategy], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)

    entries = []
    for line in report["perf_map"].splitlines():
        m = LINE.match(line)
        assert m, "not a perf map line: %r" % line
        entries.append((int(m.group(1), 16), int(m.group(2), 16), m.group(3)))

    assert collections.Counter(n for _, _, n in entries) == collections.Counter(report["expected"])
    assert report["state"]["slots_created"] == len(entries)
    assert len(entries) >= 10  # the workload runs at least this many distinct code objects

    ranges = exec_anon_ranges(report["maps"])
    for addr, size, name in entries:
        assert size > 0
        assert any(lo <= addr and addr + size <= hi for lo, hi in ranges), \
            "%s at %x+%x is not inside an executable anonymous mapping" % (name, addr, size)
    spans = sorted((a, a + s) for a, s, _ in entries)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end <= start, "overlapping entries"
