"""The recording modes (our own unwinding of perf's stack copies, frame pointers, or jitdump +
DWARF): which one a recording uses, the perf options and target environment each needs, and
the same as plain command lines for people who run perf themselves."""

import shlex

from . import _native
from .interpreter import CPYTHON_SWITCHES

DEFAULT_FREQ = 999
# Bytes of stack perf copies per sample in DWARF mode: each Python call takes about 700 bytes
# (and 7 native frames) with the hook on, so 32 KiB unwinds about 45 Python calls deep.
DEFAULT_STACK_SIZE = 32768
MAX_STACK_SIZE = 65528


class Mode:
    def __init__(self, name, backend, perf_options, summary):
        self.name, self.backend, self.perf_options, self.summary = name, backend, perf_options, summary

    def record_options(self, freq, stack_size):
        return ["-F", str(freq)] + [o.replace("STACK", str(stack_size)) for o in self.perf_options]


MODES = {
    # The default: sees native libraries whether or not they or the interpreter keep frame
    # pointers, with only the perf map, and needs no perf inject (src/perfdata/ unwinds).
    "unwind": Mode("unwind", "perf", ["--call-graph", "dwarf,STACK"], "perf map + our own unwinding of perf's stack copies"),
    "fp": Mode("fp", "perf", ["-g"], "frame pointers + the perf map"),
    # -k 1: perf inject --jit needs CLOCK_MONOTONIC timestamps to place the jitdump's records.
    "dwarf": Mode("dwarf", "perf_jit", ["-k", "1", "--call-graph", "dwarf,STACK"], "jitdump + DWARF unwinding"),
}


MODE_ADVICE = """\
  unwind (the default): native libraries under their Python callers on any interpreter; perf
         copies stacks (bigger recordings), perf-trampoline unwinds them (time grows with samples)
  fp:    the cheapest recording, and perf report reads it as it is; needs an interpreter built
         with frame pointers, and stacks stop at native libraries built without them
  dwarf: perf report on any interpreter, through perf inject --jit (perf 6.0+) of the
         functions the samples reach (perf-trampoline inject)
"""


def choose_mode(requested, probe):
    """(Mode, why) for ``--mode requested``. ``auto`` is ``unwind`` on every interpreter: frame
    pointers stop at the first native library built without them (Debian's libz, libcrypto),
    and the jitdump path costs a perf inject per function."""
    if requested != "auto":
        return MODES[requested], "as asked (--mode %s)" % requested
    return MODES["unwind"], "the default: native libraries and Python frames with or without frame pointers"


def target_env(mode, environ):
    """The target's environment for ``mode``, and the notes on what was changed."""
    env = dict(environ)
    notes = []
    for name in CPYTHON_SWITCHES:
        if env.pop(name, None) is not None:
            notes.append("%s removed from the target's environment (CPython's own switch; "
                         "perf-trampoline replaces it)" % name)
    if mode.backend == "perf" and env.pop(_native.OUTPUT_DIR_VARIABLE, None) is not None:
        notes.append("%s ignored: perf maps are read from %s only" % (_native.OUTPUT_DIR_VARIABLE, _native.PERF_MAP_DIR))
    env["PERF_TRAMPOLINE"] = mode.backend
    return env, notes


def perf_commands(mode, freq, stack_size, command):
    """What ``record`` does for ``command`` in ``mode``, as plain perf command lines."""
    data = "perf.data"
    lines = [["PERF_TRAMPOLINE=" + mode.backend, "perf", "record"] + mode.record_options(freq, stack_size)
             + ["-o", data, "--"] + command]
    if mode.name == "unwind":
        lines.append(["perf-trampoline", "report", data, "-o", "flamegraph.svg"])
        return [" ".join(shlex.quote(w) for w in line) for line in lines]
    if mode.name == "dwarf":
        lines.append(["perf-trampoline", "inject", "-i", data, "-o", "perf.jit.data"])
        data = "perf.jit.data"
    lines.append(["perf", "report", "--no-children", "-i", data])
    return [" ".join(shlex.quote(w) for w in line) for line in lines]
