"""CPython's JIT (3.14+, ``PYTHON_JIT=1``) and our profiles: whether it is on, whether a backend's
profile stays right while it runs, turning it off for a run, and activate() refusing."""

import os
import sys

VARIABLE = "PYTHON_JIT"

# From 3.15 on x86-64 the JIT's code keeps the frame pointer (CPython gh-126910): perf -g and
# our unwinder (which falls back to frame pointers in memory without CFI) pass through it.
# 3.14's keeps none. No version describes its code to anyone (no perf map line, no jitdump
# record, no unwind info), so perf's DWARF unwinder, which the jitdump path relies on, stops
# in it on every version. docs/ARCHITECTURE.md has the measurements.
FRAME_POINTERS_FROM = (3, 15)


def is_on():
    """Whether this interpreter runs CPython's JIT now."""
    jit = getattr(sys, "_jit", None)
    return bool(jit is not None and jit.is_enabled())


def comes_on():
    """Whether the JIT will run once start-up is over. The start-up switches (a .pth file) run
    before CPython turns it on, so they read what it will read: ``PYTHON_JIT``, on unless empty
    or starting with 0. Unset, the build decides; every build we know ships it off (Debian's and
    python.org's ``--enable-experimental-jit=yes-off``), and asking the build (sysconfig) would
    add 7 ms to every start-up. So on a build with the JIT on by default only the runner and
    activate() after start-up, which see the JIT itself, keep the profile right."""
    jit = getattr(sys, "_jit", None)
    if jit is None or not jit.is_available():
        return False
    if jit.is_enabled():
        return True
    value = "" if sys.flags.ignore_environment else os.environ.get(VARIABLE, "")
    return bool(value) and not value.startswith("0")


def _outputs(backend):
    """The backend's outputs, or None when it is not a valid name (activate() says why)."""
    parts = [p.strip() for p in backend.split(",")] if isinstance(backend, str) else [None]
    return parts if all(p in ("perf", "perf_jit") for p in parts) else None


def why_wrong(backend, version):
    """Why a profile with ``backend`` on CPython ``version`` (a tuple) is wrong while the JIT
    runs, or None when it stays right."""
    outputs = _outputs(backend)
    if outputs is None:
        return None
    if tuple(version[:2]) < FRAME_POINTERS_FROM:
        return ("CPython %d.%d's JIT code keeps no frame pointer and no unwind info, so no unwinder "
                "gets through it to the Python functions" % tuple(version[:2]))
    if "perf_jit" in outputs:
        return ("the jitdump is read through perf's DWARF unwinder, which stops in the JIT's code "
                "(CPython describes that code to no one)")
    return None


def _refusal(backend, jit_runs):
    reason = why_wrong(backend, sys.version_info) if jit_runs else None
    return reason and ("CPython's JIT is on and %s; start Python with %s=0 to profile with backend %r"
                       % (reason, VARIABLE, backend))


def refusal_while_on(backend):
    """Why activate() refuses ``backend`` while the JIT runs, or None. The extension's
    activate() calls this only when ``sys._jit.is_enabled()``: no start-up imports this module
    unless the JIT runs or is asked for (see the extension's _jit_may_run)."""
    return _refusal(backend, True)


def turn_off_if_wrong(backend):
    """Turns the JIT off for this run (``PYTHON_JIT=0``, also in child processes) when it
    would make ``backend``'s profile wrong, saying so in one line. The start-up switches run
    before CPython reads ``PYTHON_JIT``: setting it is enough. After start-up (the runner) the
    JIT is on already: this interpreter runs again from the start, with the same arguments,
    environment otherwise and pid. Returns None, or why support must stay off when the JIT
    cannot be turned off (``python -E``, exec failing)."""
    refusal = _refusal(backend, comes_on())
    # PYTHON_JIT=0 with the JIT on (it was not read): starting again would start again forever.
    if not refusal or sys.flags.ignore_environment or os.environ.get(VARIABLE, "").startswith("0"):
        return refusal
    asked = os.environ.get(VARIABLE)
    os.environ[VARIABLE] = "0"
    running = is_on()
    sys.stderr.write("perf_trampoline: CPython's JIT is off for this run (%s%s=0): %s\n"
                     % ("started again with " if running else "", VARIABLE, why_wrong(backend, sys.version_info)))
    if not running:
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(sys.executable, getattr(sys, "orig_argv", None) or [sys.executable] + sys.argv)
    except (OSError, ValueError) as e:
        if asked is None:
            del os.environ[VARIABLE]
        else:
            os.environ[VARIABLE] = asked
        return "%s (running it again failed: %s)" % (refusal, e)


def _version_of(probe):
    return tuple(int(p) for p in probe["version"].split(".")[:2])


def recording_note(backend, probe, env):
    """For ``record``: turns the JIT off in the target's environment ``env`` when the target
    (``probe``, see interpreter.py) runs it and ``backend``'s profile would be wrong. Returns
    the line saying what was chosen, or None when the target has no JIT on."""
    if not probe or not probe.get("jit"):
        return None
    reason = why_wrong(backend, _version_of(probe))
    if reason is None:
        return "CPython's JIT stays on in the target: this mode unwinds through its code (frame pointers)"
    env[VARIABLE] = "0"
    return "CPython's JIT turned off in the target (%s=0): %s" % (VARIABLE, reason)


def doctor_lines(probe, modes):
    """For ``doctor``: (level, text, details) on the probed interpreter's JIT and what it means
    for each of ``modes`` (name -> Mode), or None when that interpreter has no JIT."""
    if probe.get("jit") is None:
        return None
    details = []
    for name, mode in modes.items():
        reason = why_wrong(mode.backend, _version_of(probe))
        details.append("%-6s %s" % (name + ":", "turns the JIT off in the target (%s=0): %s" % (VARIABLE, reason)
                                    if reason else "keeps the JIT on (its code keeps frame pointers)"))
    state = "on (%s=1)" % VARIABLE if probe["jit"] else "available, off (%s=1 turns it on)" % VARIABLE
    return "note", "CPython's JIT is %s in %s %s; what each mode does with it on:" % (
        state, probe["executable"], probe["version"]), details
