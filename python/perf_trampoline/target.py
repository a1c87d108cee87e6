"""A running process as attach sees it: that it exists, that this user may trace it, which
CPython it runs and whether that CPython takes remote code; each refusal is one line with its
fix, and nothing in the process is touched."""

import os
import re

from . import machine

CAP_SYS_PTRACE = 19


class Refusal(Exception):
    """The attach cannot be done: one line saying why and what fixes it; nothing was changed."""


class Target:
    """A live process as ``inspect`` found it."""

    def __init__(self, pid, exe, version, uid, cmdline, environ):
        self.pid, self.exe, self.version, self.uid = pid, exe, version, uid
        self.cmdline, self.environ = cmdline, environ

    @property
    def version_text(self):
        return "%d.%d" % self.version

    @property
    def file_owner(self):
        """Who the files handed to it belong to: root gives them to the target's own user, who
        alone may then change them (that user runs the code anyway); else None (us)."""
        return self.uid if os.geteuid() == 0 else None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def _has_cap_sys_ptrace():
    for line in read("/proc/self/status").decode().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    return False


def _is_ancestor(pid):
    """Whether this process is an ancestor of ``pid`` (what kernel.yama.ptrace_scope=1 allows)."""
    me = os.getpid()
    while pid > 1:
        try:
            stat = read("/proc/%d/stat" % pid).decode(errors="replace")
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == me:
            return True
    return False


def may_trace(target):
    """Refuses when kernel.yama.ptrace_scope keeps this user from tracing ``target``, which
    ``sys.remote_exec`` needs (it writes into the target's memory); a standby target needs
    only its FIFO."""
    pid, root = target.pid, os.geteuid() == 0
    scope = machine.read_int("/proc/sys/kernel/yama/ptrace_scope")
    if scope is None or root and scope < 3:
        return
    if scope == 3:
        raise Refusal("kernel.yama.ptrace_scope=3 forbids tracing any process until reboot: start the program "
                      "with PERF_TRAMPOLINE=standby instead")
    if scope == 2 or not _is_ancestor(pid):
        raise Refusal("kernel.yama.ptrace_scope=%d lets only %s trace process %d (fix: run this as root, "
                      "`sysctl kernel.yama.ptrace_scope=0`, or start the program with PERF_TRAMPOLINE=standby)"
                      % (scope, "root" if scope == 2 else "its parents", pid))


def _python_version(pid, exe):
    """(major, minor) of the CPython ``pid`` runs, from its executable's or libpython's name;
    None when it is not a Python."""
    names = [os.path.basename(exe)]
    try:
        names += [line.rsplit("/", 1)[-1] for line in read("/proc/%d/maps" % pid).decode(errors="replace").splitlines()
                  if "libpython" in line]
    except OSError:
        pass
    for name in names:
        m = re.match(r"(?:lib)?python(\d)\.(\d+)", name)
        if m:
            return int(m.group(1)), int(m.group(2))
    return None


def inspect(pid):
    """The Target ``pid`` is, or Refusal when it is no process we may attach to."""
    try:
        uid = os.stat("/proc/%d" % pid).st_uid
    except FileNotFoundError:
        raise Refusal("no process %d (check the pid: `ps -e` lists them)" % pid) from None
    if uid != os.geteuid() and os.geteuid() != 0:
        raise Refusal("process %d belongs to another user (uid %d): run this as that user, or as root" % (pid, uid))
    if os.geteuid() == 0 and not _has_cap_sys_ptrace():
        # Without it even root may not read the /proc files of a process with more capabilities.
        raise Refusal("no permission to trace process %d: this container lacks CAP_SYS_PTRACE "
                      "(fix: start it with --cap-add SYS_PTRACE)" % pid)
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
        cmdline = read("/proc/%d/cmdline" % pid).split(b"\0")
        environ = dict(v.split(b"=", 1) for v in read("/proc/%d/environ" % pid).split(b"\0") if b"=" in v)
    except FileNotFoundError:
        raise Refusal("process %d is not a Python process (it has no executable: a kernel thread, or exiting)" % pid) from None
    except PermissionError:
        raise Refusal("no permission to read process %d's /proc files: run this as its user, or as root" % pid) from None
    if exe.endswith(" (deleted)"):
        exe = exe[:-len(" (deleted)")]
    version = _python_version(pid, exe)
    if version is None:
        raise Refusal("process %d is not a Python process (it runs %s)" % (pid, exe))
    if version < (3, 9):
        raise Refusal("process %d runs Python %d.%d: perf-trampoline supports 3.9 and newer" % ((pid,) + version))
    return Target(pid, exe, version, uid, cmdline, environ)


def libc_of(pid):
    """The C library process ``pid`` runs on, by the names bring_along_hook.facts() gives:
    "glibc", "musl", or "unknown"."""
    try:
        maps = read("/proc/%d/maps" % pid).decode(errors="replace")
    except OSError:
        return "unknown"
    if "ld-musl-" in maps or "libc.musl-" in maps:
        return "musl"
    if re.search(r"/libc(?:-[\d.]+)?\.so(?:\.6)?$", maps, re.M):
        return "glibc"
    return "unknown"


def same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def remote_debug_refusal(target):
    """Why CPython 3.14+ in ``target`` will not run remote code, as far as its command line
    and environment tell, or None."""
    args = [a.decode(errors="replace") for a in target.cmdline]
    for i, a in enumerate(args[1:], 1):
        if a == "-Xdisable_remote_debug" or a == "-X" and args[i + 1:i + 2] == ["disable_remote_debug"]:
            return ("process %d was started with -X disable_remote_debug: it runs no remote code "
                    "(fix: restart it without, or with PERF_TRAMPOLINE=standby)" % target.pid)
        if not a.startswith("-"):
            break
    if target.environ.get(b"PYTHON_DISABLE_REMOTE_DEBUG"):
        return ("process %d was started with PYTHON_DISABLE_REMOTE_DEBUG set: it runs no remote code "
                "(fix: restart it without, or with PERF_TRAMPOLINE=standby)" % target.pid)
    return None


def alive(pid):
    try:
        state = read("/proc/%d/stat" % pid).decode(errors="replace").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
