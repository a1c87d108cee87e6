"""Injection of only the jitted functions the samples reach (``perf-trampoline inject``, and
``record``/``report`` in jitdump mode): every sample's call chain as plain ``perf inject --jit``
gives it, with a fraction of the functions written, and no jitted-*.so left where perf's own
injection would leave them."""

import glob
import os
import re
import shutil
import subprocess

import pytest
from conftest import INTERPRETERS
from test_cli import cli

# One interpreter per perf: the comparison is about perf inject (6.1 on the host, 7.2 in the
# sid root, which unwinds with libdw), and plain perf inject of tens of thousands of functions
# takes minutes.
FUNCTIONS = {"host-3.11": 5000, "sid-3.15": 20000}
PERFS = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name in FUNCTIONS] or [
    pytest.param(None, marks=pytest.mark.skip(reason="host-3.11 / sid-3.15 missing: run scripts/test-interpreters.sh"))]

# Runs N generated functions once each (as a big application's start-up does), then spends
# its time in a short chain: what the profile shows.
MANY = r'''
import os, sys
print("PID=%d" % os.getpid(), flush=True)
n = int(sys.argv[1])
ns = {}
exec(compile("\n".join("def f%d(x):\n    return x + %d\n" % (i, i) for i in range(n)), "generated.py", "exec"), ns)
total = sum(ns["f%d" % i](1) for i in range(n))
def leaf(k):
    s = 0
    for j in range(k):
        s += j * j
    return s
def middle():
    return leaf(2_000_000)
for _ in range(4):
    middle()
print(total)
'''


def chains(interp, data, work):
    """perf script's samples of ``data``: thread, time and every frame's address and symbol."""
    out = interp.perf(["--buildid-dir", str(work / "buildid"), "script", "-i", str(data), "--no-inline",
                       "-F", "tid,time,ip,sym"], cwd=work)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode(errors="replace")


def build_id_cache(interp):
    """The files in perf's default build-id cache (~/.debug) where perf runs."""
    listing = subprocess.run(interp.wrap + ["sh", "-c", "find ~/.debug 2>/dev/null | sort"],
                             capture_output=True, text=True, timeout=60)
    return listing.stdout


def jitted_in(directory, pid):
    return glob.glob(os.path.join(directory, "jitted-%d-*.so" % pid))


@pytest.mark.parametrize("interp_of_perf", PERFS)
def test_same_call_chains_as_plain_perf_inject(interp_of_perf, work):
    interp = interp_of_perf
    (work / "many.py").write_text(MANY)
    n = FUNCTIONS[interp.name]
    status, stdout, stderr = cli(interp, ["record", "--mode", "dwarf", "--keep", "-o", str(work / "rec.svg"), "--"]
                                 + interp.python + [str(work / "many.py"), str(n)], work)
    pid = int(re.search(r"PID=(\d+)", stdout).group(1))
    ours = []
    try:
        assert status == 0, stderr
        kept, total = map(int, re.search(r"(\d+) of (\d+) functions", stderr).groups())
        assert total >= n and 0 < kept < total / 10, stderr
        ours.append(re.search(r"the jitted code in (\S+)/ it needs", stderr).group(1))
        assert not jitted_in("/tmp", pid), "our injection leaves no jitted-*.so beside the jitdump"

        cache_before = build_id_cache(interp)
        status, _, stderr = cli(interp, ["inject", "-i", str(work / "rec.perf.data"), "-o", str(work / "mine.data")],
                                work)
        assert status == 0, stderr
        ours.append(re.search(r"its jitted code is in (\S+)/", stderr).group(1))
        assert ours[-1].startswith("/tmp/jitted-") and jitted_in(ours[-1] + "/0", pid)
        assert not jitted_in("/tmp", pid)
        assert build_id_cache(interp) == cache_before, "nothing goes into ~/.debug"

        plain = interp.perf(["--buildid-dir", str(work / "buildid"), "inject", "--jit", "-i",
                             str(work / "rec.perf.data"), "-o", str(work / "plain.data")], cwd=work, timeout=1800)
        assert plain.returncode == 0, plain.stderr.decode()
        expected = chains(interp, work / "plain.data", work)
        assert expected.count("py::middle:") > 100, "plain perf inject names the chain (else nothing is compared)"
        assert chains(interp, work / "rec.perf.jit.data", work) == expected
        assert chains(interp, work / "mine.data", work) == expected
    finally:
        for path in jitted_in("/tmp", pid) + ["/tmp/jit-%d.dump" % pid, "/tmp/perf-%d.map" % pid]:
            if os.path.exists(path):
                os.unlink(path)
        for directory in ours:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("interp_of_perf", PERFS[:1])
def test_inject_refuses_what_it_cannot_inject(interp_of_perf, work):
    interp = interp_of_perf
    status, _, stderr = cli(interp, ["inject", "-i", str(work / "none.data")], work)
    assert status == 2 and "none.data: no such file" in stderr and len(stderr.splitlines()) == 1, stderr

    rec = interp.perf(["record", "-q", "-o", str(work / "plain.data"), "--", "true"], cwd=work)
    assert rec.returncode == 0, rec.stderr.decode()
    status, _, stderr = cli(interp, ["inject", "-i", str(work / "plain.data"), "-o", str(work / "out.data")], work)
    assert status == 2 and "maps no jitdump: nothing to inject" in stderr, stderr
    assert not (work / "out.data").exists()

    (work / "taken").mkdir()
    status, _, stderr = cli(interp, ["inject", "-i", str(work / "plain.data"), "--jitted-dir", str(work / "taken")],
                            work)
    assert status == 2 and "taken already exists" in stderr, stderr
