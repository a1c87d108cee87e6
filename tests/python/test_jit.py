"""CPython's JIT switched on (``PYTHON_JIT=1``; Debian's 3.14 and 3.15 have it): the seed example's
chain as often as under CPython's own perf support (which turns the JIT off) in each mode; where
our profile could not be right the JIT is turned off (one line; argv, exit status and pid kept)
and ``activate()`` refuses; ``record`` and ``doctor`` say what the JIT means."""

import json
import math
import time

import pytest
from conftest import copy_example, remove_recorded_outputs
from perf_trampoline.stacks import chain_share
from test_cli import cli, folded_stacks, qualnames
from test_jitdump import dwarf_profile, require_jit_unwinding
from test_unwind import note, share

SEED_CHAIN = ["foo", "bar", "baz", "<module>"]  # innermost first, as chain_share takes it
ITERATIONS = "40000000"
JIT_ON = {"PYTHON_JIT": "1"}
TURNED_OFF = "perf_trampoline: CPython's JIT is off for this run ("


def require_jit(interp):
    out = interp.run(["-c", "import sys; print(hasattr(sys, '_jit') and sys._jit.is_available())"])
    if out.stdout.strip() != b"True":
        pytest.skip("%s has no JIT (CPython 3.14+ built with --enable-experimental-jit has one)" % interp.name)


def jit_breaks(interp, backend):
    """Whether the JIT's code stops the unwinders ``backend``'s profile is read with: 3.14's
    keeps no frame pointer, and perf's DWARF unwinder (the jitdump's) stops in it on 3.15 too."""
    return interp.version < (3, 15) or "perf_jit" in backend


def fp_profile(interp, work, python_args, env):
    """perf script's text of ``perf record -g`` of ``python python_args`` (maps removed, a
    failed run's too)."""
    data = work / "perf.data"
    since = time.time()
    try:
        rec = interp.perf(["record", "-F", "999", "-g", "-q", "-o", str(data), "--", "env"]
                          + ["%s=%s" % kv for kv in env.items()] + interp.python + python_args, cwd=work)
        assert rec.returncode == 0, rec.stderr.decode()
        script = interp.perf(["script", "--no-inline", "-i", str(data)], cwd=work)
        assert script.returncode == 0, script.stderr.decode()
    finally:
        remove_recorded_outputs(interp, data, since, cwd=work)
    return script.stdout.decode(errors="replace")


def as_right_as(ours, theirs):
    """Whether our chain share is at least CPython's minus the issue's 1 point, given that each
    is a share of about a thousand samples: two runs of one profiler differ by up to 2 points
    from sampling alone (binomial noise), so only a shortfall beyond 2.5 standard errors of the
    difference counts (one-sided, about 0.6% false alarms). ``ours`` and ``theirs`` are
    (samples with the chain, samples)."""
    (h1, n1), (h2, n2) = ours, theirs
    p1, p2 = h1 / n1, h2 / n2
    return p1 >= p2 - 0.01 - 2.5 * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


def side_by_side(interp, work, profile, ours_args, builtin_option, ours_env):
    """((samples with the chain, samples) ours, CPython's), the seed example under ``profile``
    with the JIT asked for."""
    seed = copy_example("seed_example.py", work)
    shares = []
    for where, args, env in (("ours", ours_args + [str(seed), ITERATIONS], dict(JIT_ON, **ours_env)),
                             ("cpython", ["-X", builtin_option, str(seed), ITERATIONS], JIT_ON)):
        (work / where).mkdir()
        hits, total = chain_share(profile(interp, work / where, args, env), SEED_CHAIN, filename=str(seed))
        assert total >= 300, "too few samples to judge: %d" % total
        shares.append((hits, total))
    return tuple(shares)


def test_dwarf_mode_with_the_jit_on_as_right_as_cpythons_own(interp, work):
    require_jit(interp)
    require_jit_unwinding(interp)
    ours, theirs = side_by_side(interp, work, dwarf_profile, [], "perf_jit", {"PERF_TRAMPOLINE": "perf_jit"})
    note("jit_dwarf", {"interpreter": interp.name, "ours": ours[0] / ours[1], "cpython": theirs[0] / theirs[1]})
    assert as_right_as(ours, theirs), (ours, theirs)


def test_fp_mode_with_the_jit_on_as_right_as_cpythons_own(interp, work):
    require_jit(interp)
    if not interp.has_frame_pointers():
        pytest.skip("%s is built without frame pointers: perf record -g cannot walk it, JIT or not" % interp.name)
    ours, theirs = side_by_side(interp, work, fp_profile, [], "perf", {"PERF_TRAMPOLINE": "perf"})
    note("jit_fp", {"interpreter": interp.name, "ours": ours[0] / ours[1], "cpython": theirs[0] / theirs[1]})
    assert as_right_as(ours, theirs), (ours, theirs)


def test_record_says_what_it_does_with_the_jit_and_the_chain_is_right(interp, work):
    """record's default mode: the JIT stays on where frame pointers get through its code (3.15),
    is turned off in the target where not (3.14); the chain as with CPython's own -X perf
    recorded the same way (perf map + stack copies, our unwinder)."""
    require_jit(interp)
    seed = copy_example("seed_example.py", work)
    status, _, stderr = cli(interp, ["record", "-o", "ours.svg", "--"] + interp.python + [str(seed), ITERATIONS],
                            work, env=JIT_ON)
    assert status == 0, stderr
    kept = "CPython's JIT stays on in the target" in stderr
    off = "CPython's JIT turned off in the target (PYTHON_JIT=0)" in stderr
    assert (kept, off) == (not jit_breaks(interp, "perf"), jit_breaks(interp, "perf")), stderr

    data = work / "cpython.perf.data"
    since = time.time()
    try:
        rec = interp.perf(["record", "-F", "999", "--call-graph", "dwarf,32768", "-q", "-o", str(data), "--",
                           "env", "PYTHON_JIT=1"] + interp.python + ["-X", "perf", str(seed), ITERATIONS], cwd=work)
        assert data.exists(), rec.stderr.decode()
        status, _, stderr = cli(interp, ["report", str(data), "-o", "cpython.svg"], work)
    finally:
        remove_recorded_outputs(interp, data, since, cwd=work)
    assert status == 0, stderr

    def chain(name):
        stacks = folded_stacks(work / name)
        full = share(stacks, lambda s: qualnames(s, str(seed)) == SEED_CHAIN[::-1])  # checks the sample count
        total = sum(stacks.values())
        return round(full * total), total

    ours, theirs = chain("ours.folded"), chain("cpython.folded")
    note("jit_unwind", {"interpreter": interp.name, "ours": ours[0] / ours[1], "cpython": theirs[0] / theirs[1],
                        "jit_kept": kept})
    assert as_right_as(ours, theirs), (ours, theirs)


# Prints what the program sees, then exits with the status it is given.
PROBE = r'''
import json, os, sys
import perf_trampoline
print(json.dumps({"argv": sys.argv, "pid": os.getpid(), "jit": sys._jit.is_enabled(),
                  "active": perf_trampoline.is_active(), "PYTHON_JIT": os.environ.get("PYTHON_JIT")}))
sys.exit(int(sys.argv[1]))
'''

# Starts a command with more environment (JSON, the first argument), prints its pid, exit
# status and output as JSON.
DRIVER = r'''
import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[2:], env=dict(os.environ, **json.loads(sys.argv[1])), stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE)
out, err = p.communicate()
print(json.dumps({"pid": p.pid, "status": p.returncode, "stdout": out.decode(), "stderr": err.decode()}))
'''


@pytest.mark.parametrize("how", ["runner", "PERF_TRAMPOLINE"])
@pytest.mark.parametrize("backend", ["perf", "perf_jit"])
def test_start_up_turns_the_jit_off_only_where_it_breaks_the_profile(interp, work, how, backend):
    require_jit(interp)
    probe = work / "probe.py"
    probe.write_text(PROBE)
    env = dict(JIT_ON)
    if how == "runner":
        args = ["-m", "perf_trampoline", "--backend", backend, str(probe), "3", "a b"]
    else:
        args, env["PERF_TRAMPOLINE"] = [str(probe), "3", "a b"], backend
    out = interp.run(["-c", DRIVER, json.dumps(env)] + interp.python + args)
    assert out.returncode == 0, out.stderr.decode()
    ran = json.loads(out.stdout)
    seen = json.loads(ran["stdout"])
    breaks = jit_breaks(interp, backend)
    assert ran["status"] == 3, ran
    assert seen["argv"] == [str(probe), "3", "a b"], seen
    assert seen["pid"] == ran["pid"], "the pid is the one the parent started"
    assert seen["active"], ran
    assert seen["jit"] is not breaks, ran
    assert seen["PYTHON_JIT"] == ("0" if breaks else "1"), seen
    lines = ran["stderr"].splitlines()
    assert [line.startswith(TURNED_OFF) for line in lines] == ([True] if breaks else []), ran["stderr"]
    # The start-up switches run before CPython turns the JIT on; the runner runs after.
    assert ("(started again with PYTHON_JIT=0)" in ran["stderr"]) is (breaks and how == "runner"), ran["stderr"]


def test_start_up_leaves_an_unasked_jit_and_the_environment_alone(interp, work):
    require_jit(interp)
    probe = work / "probe.py"
    probe.write_text(PROBE)
    # Empty is unset to CPython (and holds off a PYTHON_JIT the test run may have).
    asked = {"PERF_TRAMPOLINE": "perf_jit", "PYTHON_JIT": ""}
    out = interp.run(["-c", DRIVER, json.dumps(asked), interp.python[0], str(probe), "0"])
    ran = json.loads(out.stdout)
    seen = json.loads(ran["stdout"])
    assert (seen["jit"], seen["active"], seen["PYTHON_JIT"], ran["stderr"]) == (False, True, "", ""), ran


ACTIVATE = r'''
import sys, perf_trampoline
try:
    perf_trampoline.activate(sys.argv[1])
except ValueError as e:
    print("refused:", e)
else:
    print("active:", perf_trampoline.is_active(), "jit:", sys._jit.is_enabled())
'''


@pytest.mark.parametrize("backend", ["perf", "perf_jit", "perf,perf_jit"])
def test_activate_refuses_a_backend_the_jit_breaks(interp, backend):
    require_jit(interp)
    on = interp.run(["-c", ACTIVATE, backend], env=JIT_ON).stdout.decode()
    if jit_breaks(interp, backend):
        assert on.startswith("refused: CPython's JIT is on and "), on
        assert "PYTHON_JIT=0" in on, on
    else:
        assert on.strip() == "active: True jit: True", on
    off = interp.run(["-c", ACTIVATE, backend], env={"PYTHON_JIT": "0"}).stdout.decode()
    assert off.strip() == "active: True jit: False", off


def test_doctor_says_what_the_jit_means_per_mode(interp, work):
    require_jit(interp)
    status, stdout, stderr = cli(interp, ["doctor", "--python", interp.python[0]], work, env=JIT_ON)
    assert "CPython's JIT is on (PYTHON_JIT=1)" in stdout, stdout + stderr
    for mode, backend in (("unwind", "perf"), ("fp", "perf"), ("dwarf", "perf_jit")):
        line = next(line for line in stdout.splitlines() if line.strip().startswith(mode + ":"))
        assert ("turns the JIT off" in line) is jit_breaks(interp, backend), line
