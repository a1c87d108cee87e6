"""Start-up switches, imported when one of them is set (perf_trampoline.pth imports
_perf_trampoline_switches, which checks).

``PERF_TRAMPOLINE=<backend>`` works on every version (``PERF_TRAMPOLINE=standby`` prepares the
process for a later ``perf-trampoline attach``, see standby.py); ``PYTHONPERFSUPPORT=1``, ``-X perf``,
``PYTHON_PERF_JIT_SUPPORT=1`` and ``-X perf_jit`` are honoured on interpreters that lack
CPython's own support for them (3.11 and older).
Support reaches child processes too (see activate(children=True)) unless
``PERF_TRAMPOLINE_CHILDREN=0`` keeps it to this process.
A bad value prints one line naming the accepted values, and the program runs without support.
Where CPython's JIT would make the profile wrong, it is kept off for the run (see jit.py).

_perf_trampoline_switches loads this module and the extension straight from this directory and
calls run(): the package itself (its __init__) is not imported at start-up. So this module
imports nothing of the package at its top, and run() reaches the extension as ``._native``,
which is already loaded then.
"""

import os
import sys


def _say(msg):
    sys.stderr.write("perf_trampoline: " + msg + "\n")


CHILDREN = "PERF_TRAMPOLINE_CHILDREN"


def _flag(name, value):
    """(on, error) for a CPython-style 0/1 switch."""
    if value in ("0", "1"):
        return value == "1", None
    return False, "%s=%r is not valid; accepted: 0, 1" % (name, value)


def children_wanted(environ, ignore_environment):
    """(whether support reaches child processes, error message or None): yes unless
    ``PERF_TRAMPOLINE_CHILDREN=0``."""
    value = "" if ignore_environment else environ.get(CHILDREN, "")
    if not value:
        return True, None
    on, error = _flag(CHILDREN, value)
    return (True, error + " (child processes get support too)") if error else (on, None)


def requested_backend(environ, xoptions, version_info, ignore_environment):
    """Returns (backend or None, the switch that chose it, error message or None) for the
    switches given.

    ``PERF_TRAMPOLINE`` (ours) comes first. On 3.11 and older, CPython's switches follow with
    CPython's precedence: ``-X`` before the environment, ``perf_jit`` before ``perf``.
    """
    if not ignore_environment and environ.get("PERF_TRAMPOLINE"):
        return environ["PERF_TRAMPOLINE"], "PERF_TRAMPOLINE", None  # activate() checks it
    if version_info >= (3, 12):
        return None, None, None  # CPython handles -X perf, -X perf_jit and their variables itself
    for option in ("perf_jit", "perf"):
        if option in xoptions:
            if xoptions[option] is True:
                return option, "-X " + option, None
            return None, None, "-X %s takes no value (got %r) (running without perf support)" % (option, xoptions[option])
    if ignore_environment:
        return None, None, None
    for variable, backend in (("PYTHON_PERF_JIT_SUPPORT", "perf_jit"), ("PYTHONPERFSUPPORT", "perf")):
        value = environ.get(variable)
        if value:
            on, error = _flag(variable, value)
            if error:
                return None, None, error + " (running without perf support)"
            if on:
                return backend, variable, None
    return None, None, None


def run():
    backend, switch, error = requested_backend(
        os.environ, getattr(sys, "_xoptions", {}), sys.version_info[:2], sys.flags.ignore_environment)
    if error:
        _say(error)
    if backend is None:
        return
    if backend == "standby" and switch == "PERF_TRAMPOLINE":
        from . import standby  # support stays off until an attach

        standby.arm()
        return
    children, error = children_wanted(os.environ, sys.flags.ignore_environment)
    if error:
        _say(error)
    if children and not switch.startswith("-X"):
        # A variable reaches child processes by itself, each reading it as its version does
        # (CPython's own switches are CPython's from 3.12 on); -X is handed on as PERF_TRAMPOLINE.
        children = None
    from ._native import _jit_may_run, activate

    if _jit_may_run():
        from . import jit

        refusal = jit.turn_off_if_wrong(backend)
        if refusal:
            _say("%s (running without perf support)" % refusal)
            return
    try:
        activate(backend, children=children)
    except ValueError as e:
        _say("PERF_TRAMPOLINE=%r: %s (running without perf support)" % (backend, e))
    except Exception as e:  # the program must run even when support cannot be turned on
        _say("%s (running without perf support)" % (e,))
