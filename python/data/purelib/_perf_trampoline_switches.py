"""What perf_trampoline.pth runs in every Python started in this environment: whether a switch
that turns perf support on is set. Only then is perf_trampoline imported (its extension module
loaded), and _startup.py reads the switch. An import, not the test itself on the .pth line:
site compiles a .pth line at every start-up (this test cost some 1 million instructions,
0.3 ms, there), while this module's bytecode is cached."""

import os
import sys

if os.environ.get("PERF_TRAMPOLINE") or (sys.version_info < (3, 12) and (
        os.environ.get("PYTHONPERFSUPPORT") or os.environ.get("PYTHON_PERF_JIT_SUPPORT")
        or "perf" in sys._xoptions or "perf_jit" in sys._xoptions)):
    import perf_trampoline._startup  # noqa: F401
