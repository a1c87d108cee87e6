"""What profiling needs from the machine and the target interpreter: the checks behind
``perf-trampoline doctor`` and ``record``, each with its fix, and the recording mode they
lead to (our own unwinding of perf's stack copies, frame pointers, or jitdump + DWARF)."""

import ctypes
import json
import mmap
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from . import bring_along, leftovers

# perf 5.10's inject --jit writes images without the program header newer perf adds, and its
# DWARF unwinding stops in them; 6.1 and 7.2 unwind through.
PERF_FOR_JITDUMP = (6, 0)
DEFAULT_FREQ = 999
# Bytes of stack perf copies per sample in DWARF mode: each Python call takes about 700 bytes
# (and 7 native frames) with the hook on, so 32 KiB unwinds about 45 Python calls deep.
DEFAULT_STACK_SIZE = 32768
MAX_STACK_SIZE = 65528

# Python's own perf switches: on 3.12+ they turn on CPython's trampoline, which ours will not
# stack on; on older versions ours honours them, after PERF_TRAMPOLINE.
CPYTHON_SWITCHES = ("PYTHONPERFSUPPORT", "PYTHON_PERF_JIT_SUPPORT")


def old_perf_warning(text):
    return ("%s does not unwind through jitted code (needs perf %d.%d or newer): Python stacks stop at "
            "their innermost function (self samples stay right, totals do not). fix: a newer perf, or an "
            "interpreter built with frame pointers" % ((text,) + PERF_FOR_JITDUMP))


INSTALL_PERF = ("install perf: `apt install linux-perf` (Debian), `apt install linux-tools-$(uname -r)` "
                "(Ubuntu), `dnf install perf` (Fedora)")


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
  dwarf: perf report on any interpreter, through perf inject --jit (perf 6.0+), which takes
         minutes when the program has many thousand functions
"""


def target_env(mode, environ):
    """The target's environment for ``mode``, and the notes on what was changed."""
    env = dict(environ)
    notes = []
    for name in CPYTHON_SWITCHES:
        if env.pop(name, None) is not None:
            notes.append("%s removed from the target's environment (CPython's own switch; "
                         "perf-trampoline replaces it)" % name)
    if mode.backend == "perf" and env.pop("PERF_TRAMPOLINE_DIR", None) is not None:
        notes.append("PERF_TRAMPOLINE_DIR ignored: perf maps are read from /tmp only")
    env["PERF_TRAMPOLINE"] = mode.backend
    return env, notes


# --- perf ---------------------------------------------------------------------------------

def perf_version(perf):
    """(version tuple, text) of ``perf --version``; (None, error text) when it does not run."""
    try:
        out = subprocess.run([perf, "--version"], capture_output=True, timeout=30)
    except OSError as e:
        return None, str(e)
    text = (out.stdout or out.stderr).decode(errors="replace").strip()
    m = re.search(r"(\d+)\.(\d+)", text)
    if out.returncode != 0 or not m:
        return None, text or "exit status %d" % out.returncode
    return (int(m.group(1)), int(m.group(2))), text


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def privileged():
    """Whether this process may profile regardless of perf_event_paranoid (root, CAP_PERFMON
    or CAP_SYS_ADMIN)."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as f:
            caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return False
    return bool(caps & (1 << 38 | 1 << 21))


def permission_help():
    """Why perf may be refused here, and the fixes."""
    level = _read_int("/proc/sys/kernel/perf_event_paranoid")
    who = "you run it privileged (root or CAP_PERFMON)" if privileged() else "you run it unprivileged"
    lines = ["kernel.perf_event_paranoid is %s and %s." % (level, who)]
    if not privileged() and (level is None or level > 2):
        lines.append("fix: `sudo sysctl kernel.perf_event_paranoid=2` (profiling your own processes; "
                     "1 adds kernel samples), or give perf CAP_PERFMON.")
    lines.append("In a container, its seccomp policy may forbid perf_event_open: "
                 "run it with --cap-add PERFMON or --security-opt seccomp=unconfined (docker, podman).")
    return lines


def probe_recording(perf):
    """None if ``perf record -g`` can record a short command here, else perf's complaint."""
    tmp = tempfile.mkdtemp(prefix="perf-trampoline-doctor-")
    try:
        out = subprocess.run([perf, "record", "-q", "-g", "-o", os.path.join(tmp, "probe.data"), "--", "true"],
                             capture_output=True, timeout=60, cwd=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if out.returncode == 0:
        return None
    return out.stderr.decode(errors="replace").strip() or "exit status %d" % out.returncode


def directory_error(directory, executable):
    """None if this process can create a file in ``directory`` and, with ``executable``, map
    it executable (the jitdump needs that: it is how perf finds it), else why not."""
    try:
        fd, path = tempfile.mkstemp(prefix=".perf-trampoline-", dir=directory)
    except OSError as e:
        return "cannot create a file there: %s" % (e.strerror or e)
    try:
        return _exec_mapping_error(fd) if executable else None
    finally:
        os.close(fd)
        os.unlink(path)


def _exec_mapping_error(fd):
    # Python's mmap module cannot ask for PROT_EXEC; libc's mmap can.
    os.write(fd, b"\0" * mmap.PAGESIZE)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    addr = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC, mmap.MAP_PRIVATE, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        return "mmap(PROT_EXEC) failed: %s (mounted noexec?)" % os.strerror(ctypes.get_errno())
    libc.munmap(addr, mmap.PAGESIZE)
    return None


# --- the target interpreter -----------------------------------------------------------------

# Runs in the target interpreter (any version perf-trampoline supports) and prints JSON.
_PROBE = r'''
import json, sys, sysconfig
flags = " ".join(sysconfig.get_config_var(v) or "" for v in ("CFLAGS", "CONFIGURE_CFLAGS"))
info = {"executable": sys.executable, "version": ".".join(map(str, sys.version_info[:3])),
        "frame_pointers": "-fno-omit-frame-pointer" in flags.split(),
        "cpython_trampoline": bool(getattr(sys, "is_stack_trampoline_active", lambda: False)())}
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


def choose_mode(requested, probe):
    """(Mode, why) for ``--mode requested``. ``auto`` is ``unwind`` on every interpreter: frame
    pointers stop at the first native library built without them (Debian's libz, libcrypto),
    and the jitdump path costs a perf inject per function."""
    if requested != "auto":
        return MODES[requested], "as asked (--mode %s)" % requested
    return MODES["unwind"], "the default: native libraries and Python frames with or without frame pointers"


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


def perf_commands(mode, freq, stack_size, command):
    """What ``record`` does for ``command`` in ``mode``, as plain perf command lines."""
    data = "perf.data"
    lines = [["PERF_TRAMPOLINE=" + mode.backend, "perf", "record"] + mode.record_options(freq, stack_size)
             + ["-o", data, "--"] + command]
    if mode.name == "unwind":
        lines.append(["perf-trampoline", "report", data, "-o", "flamegraph.svg"])
        return [" ".join(shlex.quote(w) for w in line) for line in lines]
    if mode.name == "dwarf":
        lines.append(["perf", "inject", "--jit", "-i", data, "-o", "perf.jit.data"])
        data = "perf.jit.data"
    lines.append(["perf", "report", "--no-children", "-i", data])
    return [" ".join(shlex.quote(w) for w in line) for line in lines]


# --- doctor ---------------------------------------------------------------------------------

class Report:
    """Check results printed as they come: "ok" or "note", "warn" (record works, with a
    caveat) or "FAIL" (record cannot work until fixed), each with its explanation and fix."""

    LEVELS = {"ok": 0, "note": 0, "warn": 1, "FAIL": 2}

    def __init__(self):
        self.worst = 0

    def add(self, level, text, details=()):
        self.worst = max(self.worst, self.LEVELS[level])
        print("  %-4s  %s" % (level, text))
        for line in details:
            print("        %s" % line)


def _note_leftovers(report, prog):
    """Notes our perf maps and jitdumps whose process is gone, and how to remove them."""
    directory = leftovers.output_dir()
    try:
        found = leftovers.find(directory)
    except OSError:
        return  # the directory check says what is wrong with it
    if found:
        maps = sum(path.endswith(".map") for path, _, _ in found)
        report.add("note", "%s holds %d perf maps and %d jitdumps of processes that are gone (%d bytes)"
                   % (directory, maps, len(found) - maps, sum(size for _, _, size in found)),
                   ["remove them: %s clean   (list them: %s clean --dry-run)" % (prog, prog)])


def doctor(python, prog):
    """Checks everything ``record`` needs for ``python``, prints each result with its fix and
    the command lines to use; returns 0 (healthy), 1 (works, with warnings) or 2 (broken)."""
    report = Report()
    print("perf-trampoline doctor (for %s)" % python)
    probe = probe_python(python, os.environ)
    if "error" in probe:
        report.add("FAIL", "cannot run %s: %s" % (python, probe["error"]))
        return 2
    mode, _ = choose_mode("auto", probe)

    perf = shutil.which("perf")
    if perf is None:
        report.add("FAIL", "perf is not on PATH", [INSTALL_PERF])
    else:
        version, text = perf_version(perf)
        if version is None:
            report.add("FAIL", "%s does not run: %s" % (perf, text), [INSTALL_PERF])
            perf = None
        elif mode.name == "dwarf" and version < PERF_FOR_JITDUMP:
            report.add("warn", "%s: %s" % (perf, old_perf_warning(text)))
        else:
            report.add("ok", "%s: %s (the jitdump + DWARF mode needs %d.%d or newer)" % ((perf, text) + PERF_FOR_JITDUMP))
    if perf is not None:
        complaint = probe_recording(perf)
        if complaint is None:
            report.add("ok", "perf may record here (a test `perf record -g -- true` worked); %s"
                       % permission_help()[0])
        else:
            report.add("FAIL", "perf may not record here: %s" % complaint.splitlines()[-1],
                       complaint.splitlines()[:-1][-6:] + permission_help())

    if probe["frame_pointers"]:
        report.add("ok", "%s (%s) has frame pointers: --mode fp works too (perf record -g, then perf report)"
                   % (probe["executable"], probe["version"]))
    else:
        report.add("note", "%s (%s) was built without frame pointers: record's default mode does not need "
                   "them; for perf report itself use --mode dwarf, not --mode fp"
                   % (probe["executable"], probe["version"]))
    report.add(*bring_along.describe(probe))
    warning = hook_warning(probe)
    if warning:
        report.add("warn", warning)
    else:
        report.add("ok", "no other frame-evaluation hook at start-up")

    if mode.name == "dwarf":
        directory, what = leftovers.output_dir(), "jitdump (it must be mapped executable)"
        fix = "fix: PERF_TRAMPOLINE_DIR=<a directory on a file system mounted without noexec>"
    else:
        directory, what = "/tmp", "perf map"
        fix = "fix: make /tmp writable for this user (perf reads perf maps from there only)"
    problem = directory_error(directory, executable=mode.name == "dwarf")
    if problem is None:
        report.add("ok", "%s can hold the %s" % (directory, what))
    else:
        report.add("FAIL", "%s cannot hold the %s: %s" % (directory, what, problem), [fix])

    _note_leftovers(report, prog)

    depth = _read_int("/proc/sys/kernel/perf_event_max_stack")
    if mode.name == "fp" and depth is not None and depth < 512:
        # About 5 frames a Python call: its trampoline and the interpreter's frames around it.
        report.add("note", "kernel.perf_event_max_stack is %d: stacks deeper than about %d Python calls are cut"
                   % (depth, depth // 5), ["for deeper ones: `sudo sysctl kernel.perf_event_max_stack=1024`"])

    example = [probe["executable"], "app.py"]
    print("\nto profile a program (%s mode: %s):\n  %s record -o flamegraph.svg -- %s"
          % (mode.name, mode.summary, prog, " ".join(shlex.quote(w) for w in example)))
    print("or record by hand and draw it with perf-trampoline:")
    for line in perf_commands(mode, DEFAULT_FREQ, DEFAULT_STACK_SIZE, example):
        print("  " + line)
    for_perf = MODES["fp" if probe["frame_pointers"] else "dwarf"]
    print("\nwhich mode when (record --mode MODE):\n" + MODE_ADVICE)
    print("for perf report itself (%s mode: %s):" % (for_perf.name, for_perf.summary))
    for line in perf_commands(for_perf, DEFAULT_FREQ, DEFAULT_STACK_SIZE, example):
        print("  " + line)
    print("\n" + ("healthy" if report.worst == 0 else
                  "works, see the warnings" if report.worst == 1 else "not ready: fix the FAIL lines"))
    return report.worst
