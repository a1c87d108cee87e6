"""Start-up switches, run from perf_trampoline.pth when one of them is set.

``PERF_TRAMPOLINE=<backend>`` works on every version; ``PYTHONPERFSUPPORT=1`` and ``-X perf``
are honoured on interpreters that lack CPython's own support for them (3.11 and older).
A bad value prints one line naming the accepted values, and the program runs without support.
"""

import os
import sys


def _say(msg):
    sys.stderr.write("perf_trampoline: " + msg + "\n")


def requested_backend(environ, xoptions, version_info, ignore_environment):
    """Returns (backend or None, error message or None) for the switches given."""
    from . import BACKENDS

    if not ignore_environment:
        value = environ.get("PERF_TRAMPOLINE")
        if value:
            if value in BACKENDS:
                return value, None
            return None, "PERF_TRAMPOLINE=%r is not a backend; accepted: %s (running without perf support)" % (
                value, ", ".join(BACKENDS))
    if version_info >= (3, 12):
        return None, None  # CPython handles -X perf and PYTHONPERFSUPPORT itself
    if "perf" in xoptions:
        if xoptions["perf"] is True:
            return "perf", None
        return None, "-X perf takes no value (got %r); use -X perf (running without perf support)" % (
            xoptions["perf"],)
    value = None if ignore_environment else environ.get("PYTHONPERFSUPPORT")
    if value:
        if value == "1":
            return "perf", None
        if value == "0":
            return None, None
        return None, "PYTHONPERFSUPPORT=%r is not valid; accepted: 0, 1 (running without perf support)" % (value,)
    return None, None


def run():
    backend, error = requested_backend(
        os.environ, getattr(sys, "_xoptions", {}), sys.version_info[:2], sys.flags.ignore_environment)
    if error:
        _say(error)
    if backend is None:
        return
    from . import activate

    try:
        activate(backend)
    except Exception as e:  # the program must run even when support cannot be turned on
        _say("%s (running without perf support)" % (e,))


run()
