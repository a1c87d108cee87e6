"""Another frame-evaluation hook already installed: ours calls through to it, never around it.

The other hook used here is CPython's own perf trampoline (3.12+), the one real PEP 523 hook
every interpreter of that age carries."""

import pytest
from conftest import map_lines

SCRIPT = r'''
import os, sys, perf_trampoline
sys.activate_stack_trampoline("perf")
try:
    perf_trampoline.activate()
except RuntimeError as e:
    print("refused:", e)
perf_trampoline.activate(stack_on_cpython=True)
def first():
    return 1
first()
perf_trampoline.deactivate()
def second():
    return 2
second()
print(os.getpid(), sys.is_stack_trampoline_active(), perf_trampoline.is_active())
'''


def test_ours_calls_through_cpythons_own_hook(interp, work):
    if interp.version < (3, 12):
        pytest.skip("CPython %d.%d has no eval hook of its own to chain to" % interp.version[:2])
    (work / "chain.py").write_text(SCRIPT)
    # CPython's writer always uses /tmp; point ours there too so both land in one map.
    out = interp.run([str(work / "chain.py")])
    assert out.returncode == 0, out.stderr.decode()
    refused, last = out.stdout.decode().splitlines()
    assert refused.startswith("refused: CPython's own perf trampoline is active")
    pid, cpython_active, ours_active = last.split()
    assert (cpython_active, ours_active) == ("True", "False")
    path = "/tmp/perf-%s.map" % pid
    try:
        lines = map_lines(path)
    finally:
        import os
        os.unlink(path)
    first = [l for l in lines if l.endswith("py::first:%s" % (work / "chain.py"))]
    second = [l for l in lines if l.endswith("py::second:%s" % (work / "chain.py"))]
    # first ran through ours and then CPython's: two trampolines at two addresses.
    assert len(first) == 2 and len({l.split()[0] for l in first}) == 2, lines
    # After deactivation CPython's hook is back in place, alone.
    assert len(second) == 1, lines
