"""Runs inside a target interpreter that does not have perf_trampoline installed.

``perf-trampoline record`` copies this file, plus one call to ``step_aside``, as
``sitecustomize.py`` into a private directory it puts first on the target's PYTHONPATH
(bring_along.py). At start-up it loads our package from the tool's own installation, turns
support on as the installed ``perf_trampoline.pth`` would, then steps aside: takes its
directory off ``sys.path`` and imports the ``sitecustomize`` it hides, if there is one.
The probe in interpreter.py runs ``facts``, ``refusal`` and ``load`` from here too, so what
``record`` and ``doctor`` predict is what the target will do.

Any Python may start inside that process tree (a child may be PyPy, an old CPython, even
Python 2), so this file keeps to syntax they all parse; where our module cannot work it says
so in one line and only runs the hidden ``sitecustomize``.
"""

import os
import sys

NAME = "perf_trampoline"
OLDEST = (3, 9)


def say(msg):
    sys.stderr.write("perf_trampoline: " + msg + "\n")


def facts():
    """What decides whether our module can load here: implementation, version, GIL or
    free-threaded build, architecture and C library."""
    import platform
    import struct
    import sysconfig

    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"; musl has no such name
    except (ValueError, OSError, AttributeError):
        libc = ""
    return {
        "implementation": platform.python_implementation(),
        "version": ".".join(str(n) for n in sys.version_info[:3]),
        "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        "machine": platform.machine(),
        "bits": struct.calcsize("P") * 8,
        "libc": libc.split()[0] if libc else (platform.libc_ver()[0] or "not glibc"),
    }


def refusal(found=None):
    """Why this interpreter can never run our module, with the fix, or None. ``found`` are its
    ``facts()`` (this interpreter's when not given)."""
    found = found or facts()
    what = "%s %s" % (found["implementation"], found["version"])
    fix = "fix: run the program with CPython %d.%d or newer (a GIL build)" % OLDEST
    if found["implementation"] != "CPython":
        return "it is %s, and perf-trampoline's module is a CPython extension; %s" % (what, fix)
    if tuple(int(n) for n in found["version"].split(".")[:2]) < OLDEST:
        return "it is %s, and perf-trampoline needs CPython %d.%d or newer; %s" % ((what,) + OLDEST + (fix,))
    if found["free_threaded"]:
        return ("it is a free-threaded build of %s, and perf-trampoline supports GIL builds only; fix: run the "
                "program with the GIL build (python%s, not python%st)" % ((what,) + (found["version"].rsplit(".", 1)[0],) * 2))
    return None


def load(package, *submodules):
    """Imports perf_trampoline (and ``submodules`` of it) from ``package``, the directory of
    the tool's installed copy, without putting the directory that holds it on sys.path (the
    rest of the tool's environment would come with it), and writes no bytecode there."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        NAME, os.path.join(package, "__init__.py"), submodule_search_locations=[package])
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    writes = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
        for name in submodules:
            __import__(NAME + "." + name)
    except BaseException:
        for name in [n for n in sys.modules if n == NAME or n.startswith(NAME + ".")]:
            del sys.modules[name]
        raise
    finally:
        sys.dont_write_bytecode = writes
    return module


def _without(entries, here):
    return [p for p in entries if os.path.abspath(p) != here]


def step_aside(package):
    """The start-up hook: support on (where PERF_TRAMPOLINE asks for it and our module can
    work), this directory off sys.path, then the sitecustomize it hides."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = _without(sys.path, here)
    sys.path_importer_cache.pop(here, None)
    if os.environ.get("PERF_TRAMPOLINE") and NAME + "._native" not in sys.modules:  # else: installed here, its .pth ran
        reason = refusal()
        try:
            if reason is None:
                load(package, "_startup")
                sys.modules[NAME + "._startup"].run()  # which turns support on, as the installed .pth does
        except Exception as e:  # the program must run even when support cannot be turned on
            reason = "cannot load %s from %s: %s: %s" % (NAME, package, type(e).__name__, e)
        if reason:
            say("%s is not profiled: %s" % (sys.executable, reason))
    if not os.environ.get("PERF_TRAMPOLINE"):
        # No support for children (PERF_TRAMPOLINE_CHILDREN=0 took the switch out, or this
        # process was started without it): they need not find this directory either.
        rest = os.pathsep.join(_without(os.environ.get("PYTHONPATH", "").split(os.pathsep), here))
        if rest:
            os.environ["PYTHONPATH"] = rest
        else:
            os.environ.pop("PYTHONPATH", None)
    # The import system keeps whatever sys.modules holds under our name once this module
    # ends: the hidden sitecustomize, or nothing when the ImportError below (named
    # "sitecustomize") tells site.py there is none, just as without us.
    del sys.modules["sitecustomize"]
    __import__("sitecustomize")
