"""What this machine offers a recording, found by asking it: perf and its version, the
permission to record, and whether a directory can hold our files."""

import ctypes
import mmap
import os
import re
import shutil
import subprocess
import tempfile

from .console import Failure

# perf 5.10's inject --jit writes images without the program header newer perf adds, and its
# DWARF unwinding stops in them; 6.1 and 7.2 unwind through.
PERF_FOR_JITDUMP = (6, 0)

INSTALL_PERF = ("install perf: `apt install linux-perf` (Debian), `apt install linux-tools-$(uname -r)` "
                "(Ubuntu), `dnf install perf` (Fedora)")


def old_perf_warning(text):
    return ("%s does not unwind through jitted code (needs perf %d.%d or newer): Python stacks stop at "
            "their innermost function (self samples stay right, totals do not). fix: a newer perf, or an "
            "interpreter built with frame pointers" % ((text,) + PERF_FOR_JITDUMP))


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


def find_perf():
    """perf's path, version and version text; Failure when there is no perf that runs."""
    perf = shutil.which("perf")
    if perf is None:
        raise Failure("perf is not on PATH; " + INSTALL_PERF)
    version, text = perf_version(perf)
    if version is None:
        raise Failure("%s does not run (%s); %s" % (perf, text, INSTALL_PERF))
    return perf, version, text


def run_perf(perf, args, what, stdout=subprocess.DEVNULL, preexec_fn=None):
    """Runs ``perf args...``; Failure with the end of its stderr when it fails."""
    with tempfile.TemporaryFile() as err:
        status = subprocess.call([perf] + args, stdout=stdout, stderr=err, preexec_fn=preexec_fn)
        if status != 0:
            err.seek(0)
            raise Failure("%s failed (status %d): %s" % (what, status, err.read().decode(errors="replace")[-2000:]))


def read_int(path):
    """The integer in a /proc or /sys file, or None."""
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
    level = read_int("/proc/sys/kernel/perf_event_paranoid")
    who = "you run it privileged (root or CAP_PERFMON)" if privileged() else "you run it unprivileged"
    lines = ["kernel.perf_event_paranoid is %s and %s." % (level, who)]
    if not privileged() and (level is None or level > 2):
        lines.append("fix: `sudo sysctl kernel.perf_event_paranoid=2` (profiling your own processes; "
                     "1 adds kernel samples), or give perf CAP_PERFMON.")
    lines.append("In a container, its seccomp policy may forbid perf_event_open: "
                 "run it with --cap-add PERFMON or --security-opt seccomp=unconfined (docker, podman).")
    return lines


def cannot_record(doctor_command):
    """The Failure for a perf that recorded nothing: why perf may be refused here, and the
    ``doctor`` command line that checks the whole set-up."""
    return Failure("perf could not record (its message is above).\n  " + "\n  ".join(permission_help())
                   + "\n  `%s` checks the whole set-up." % doctor_command)


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
