"""What the target interpreter says about itself (asked by running it), and what its answers
mean for a recording: whether another hook is in the way (whether it can load our module:
bring_along.py)."""

import json
import os
import shutil
import subprocess

from . import bring_along

# Python's own perf switches: on 3.12+ they turn on CPython's trampoline, which ours will not
# stack on; on older versions ours honours them, after PERF_TRAMPOLINE.
CPYTHON_SWITCHES = ("PYTHONPERFSUPPORT", "PYTHON_PERF_JIT_SUPPORT")

# Runs in the target interpreter (any version perf-trampoline supports) and prints JSON.
_PROBE = r'''
import json, os, sys, sysconfig
flags = " ".join(sysconfig.get_config_var(v) or "" for v in ("CFLAGS", "CONFIGURE_CFLAGS"))
info = {"executable": sys.executable, "version": ".".join(map(str, sys.version_info[:3])), "pid": os.getpid(),
        "frame_pointers": "-fno-omit-frame-pointer" in flags.split(),
        "cpython_trampoline": bool(getattr(sys, "is_stack_trampoline_active", lambda: False)()),
        "jit": sys._jit.is_enabled() if hasattr(sys, "_jit") and sys._jit.is_available() else None}
try:
    import perf_trampoline
    info["ours_active"] = perf_trampoline.is_active()
except Exception as e:
    info["support_error"] = "%s: %s" % (type(e).__name__, e)
try:
    import ctypes
    api = ctypes.pythonapi
    api.PyInterpreterState_Get.restype = ctypes.c_void_p
    get = api._PyInterpreterState_GetEvalFrameFunc
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    current = get(api.PyInterpreterState_Get())
    info["eval_hook"] = current not in (None, ctypes.cast(api._PyEval_EvalFrameDefault, ctypes.c_void_p).value)
except Exception:
    info["eval_hook"] = None
if len(sys.argv) > 2:  # bring_along.probe_args(): could it load ours instead?
    hook = {"__name__": "perf_trampoline_probe"}
    with open(sys.argv[1]) as f:
        exec(compile(f.read(), sys.argv[1], "exec"), hook)
    info.update(hook["facts"]())
    if "support_error" in info and hook["refusal"]() is None:
        try:
            hook["load"](sys.argv[2])
        except Exception as e:
            info["bring_error"] = "%s: %s" % (type(e).__name__, e)
if info["cpython_trampoline"]:
    # Switched on in the user's environment, CPython's trampoline wrote this probe's map (or
    # dump) where it always writes, /tmp; nobody profiles the probe, so it is litter.
    for path in ("/tmp/perf-%d.map" % os.getpid(), "/tmp/jit-%d.dump" % os.getpid()):
        try:
            os.unlink(path)
        except OSError:
            pass
print(json.dumps(info))
'''


def python_of(command):
    """The Python interpreter ``command`` runs, as a path, or None when it cannot be told:
    ``python...`` itself, or a script whose ``#!`` line names one."""
    exe = shutil.which(command[0]) if command else None
    if exe is None:
        return None
    if os.path.basename(exe).startswith("python"):
        return exe
    try:
        with open(exe, "rb") as f:
            first = f.readline(512).decode(errors="replace")
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if words and os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
    if words and os.path.basename(words[0]).startswith("python"):
        return shutil.which(words[0])
    return None


def probe_python(python, environ):
    """What ``python`` reports about itself (see _PROBE), or {"error": ...}. Runs with the
    given environment minus our own switch, so any eval hook it shows is someone else's."""
    env = {k: v for k, v in environ.items() if not k.startswith("PERF_TRAMPOLINE")}
    try:
        out = subprocess.run([python, "-c", _PROBE] + bring_along.probe_args(), capture_output=True, env=env,
                             timeout=60)
    except OSError as e:
        return {"error": str(e)}
    try:
        return json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (out.stderr.decode(errors="replace").strip() or "no answer")[-400:]}


def hook_warning(probe):
    """A warning when the interpreter starts with another frame-evaluation hook on, or None."""
    if probe.get("cpython_trampoline"):
        switches = [n for n in CPYTHON_SWITCHES if os.environ.get(n)]
        return ("CPython's own perf trampoline is on at start-up%s; perf-trampoline does not stack on it. "
                "fix: unset %s (record removes them for its target) and drop -X perf / -X perf_jit"
                % (" (%s is set)" % ", ".join(switches) if switches else "", " and ".join(CPYTHON_SWITCHES)))
    if probe.get("eval_hook") and not probe.get("ours_active"):
        return ("another frame-evaluation hook is installed at start-up (a sitecustomize or .pth file of a "
                "debugger or profiler?): perf-trampoline calls through it, its frames show between Python "
                "functions. fix: turn that tool off while profiling")
    return None
