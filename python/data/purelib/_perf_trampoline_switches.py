"""What perf_trampoline.pth runs in every Python started in this environment: whether a switch
that turns perf support on is set. Only then does it load the extension module and
perf_trampoline/_startup.py, which reads the switch, straight from the package directory beside
this file, and not the package itself: importing the package (its search and __init__) and
_startup through the import system cost about 0.4 ms of each start-up with support.
An import, not the test itself on the .pth line: site compiles a .pth line at every start-up
(this test cost some 1 million instructions, 0.3 ms, there), while this module's bytecode is
cached."""

import os
import sys


def _load(package, name, loader, filename):
    """Loads ``perf_trampoline.<name>`` from ``filename`` in ``package`` with the import system's
    own loader, from its frozen modules, which every Python has loaded (the importlib package
    is not imported at start-up either)."""
    spec = sys.modules["_frozen_importlib"].spec_from_loader(
        "perf_trampoline." + name, loader("perf_trampoline." + name, os.path.join(package, filename)))
    module = sys.modules["_frozen_importlib"].module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def _start():
    """Turns support on as the switches ask (see _startup.py)."""
    import _imp

    external = sys.modules["_frozen_importlib_external"]
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "perf_trampoline")
    native = [s for s in _imp.extension_suffixes() if os.path.isfile(os.path.join(package, "_native" + s))]
    if "perf_trampoline" in sys.modules or not native or not os.path.isfile(os.path.join(package, "_startup.py")):
        # Another layout (an editable install, the package elsewhere on sys.path): the import
        # system finds it.
        import perf_trampoline._startup as startup
    else:
        _load(package, "_native", external.ExtensionFileLoader, "_native" + native[0])
        startup = _load(package, "_startup", external.SourceFileLoader, "_startup.py")
    startup.run()


if os.environ.get("PERF_TRAMPOLINE") or (sys.version_info < (3, 12) and (
        os.environ.get("PYTHONPERFSUPPORT") or os.environ.get("PYTHON_PERF_JIT_SUPPORT")
        or "perf" in sys._xoptions or "perf_jit" in sys._xoptions)):
    try:
        _start()
    except Exception as e:  # the program must run even when support cannot be turned on
        sys.stderr.write("perf_trampoline: cannot load perf_trampoline from %s: %s: %s (running without perf support; "
                         "reinstall perf-trampoline for %s)\n"
                         % (os.path.dirname(os.path.abspath(__file__)), type(e).__name__, e, sys.executable))
