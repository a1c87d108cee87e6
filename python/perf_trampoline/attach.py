"""Turning perf-trampoline on and off in a Python process that is already running: what the
process is and whether it can be attached to (each refusal one line with its fix, the process
untouched), and the hand-over itself: a process started with ``PERF_TRAMPOLINE=standby``
reads the request from its FIFO (standby.py); any other CPython 3.14+ runs ``_injected.py``
through ``sys.remote_exec`` (PEP 768). Either way it answers through a result file."""

import json
import os
import re
import stat
import subprocess
import time

from . import handoff, machine, standby

# Said wherever an attach's profile is shown (the README explains it).
RUNNING_FRAMES_NOTE = ("frames already running when support came on have no trampoline: "
                       "only calls made after the attach show as Python functions")
DEFAULT_TIMEOUT = 10.0
CAP_SYS_PTRACE = 19
# The part of the hand-over run by the target's own interpreter (remote_exec must be called
# by the target's version): one JSON line saying what happened.
_HELPER = r"""
import json, sys
def out(**kw):
    print(json.dumps(kw))
if not sys.is_remote_debug_enabled():
    out(error="build")
    sys.exit(0)
if len(sys.argv) < 3:
    out(ok=True)
    sys.exit(0)
try:
    sys.remote_exec(int(sys.argv[1]), sys.argv[2])
except PermissionError as e:
    out(error="permission", text=str(e))
except ProcessLookupError as e:
    out(error="gone", text=str(e))
except Exception as e:
    out(error="other", text="%s: %s" % (type(e).__name__, e))
else:
    out(ok=True)
"""


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


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _has_cap_sys_ptrace():
    for line in _read("/proc/self/status").decode().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_PTRACE & 1)
    return False


def _is_ancestor(pid):
    """Whether this process is an ancestor of ``pid`` (what kernel.yama.ptrace_scope=1 allows)."""
    me = os.getpid()
    while pid > 1:
        try:
            stat = _read("/proc/%d/stat" % pid).decode(errors="replace")
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        if pid == me:
            return True
    return False


def _permission(pid, uid):
    """Refuses when this user may not trace ``pid`` (which remote_exec and our trigger need)."""
    root = os.geteuid() == 0
    if uid != os.geteuid() and not root:
        raise Refusal("process %d belongs to another user (uid %d): run this as that user, or as root" % (pid, uid))
    if root and not _has_cap_sys_ptrace():
        raise Refusal("no permission to trace process %d: this container lacks CAP_SYS_PTRACE "
                      "(fix: start it with --cap-add SYS_PTRACE)" % pid)
    scope = machine.read_int("/proc/sys/kernel/yama/ptrace_scope")
    if scope is None or root and scope < 3:
        return
    if scope == 3:
        raise Refusal("kernel.yama.ptrace_scope=3 forbids tracing any process until reboot: nothing can attach here")
    if scope == 2 or not _is_ancestor(pid):
        raise Refusal("kernel.yama.ptrace_scope=%d lets only %s trace process %d (fix: run this as root, or "
                      "`sysctl kernel.yama.ptrace_scope=0`)" % (scope, "root" if scope == 2 else "its parents", pid))


def _python_version(pid, exe):
    """(major, minor) of the CPython ``pid`` runs, from its executable's or libpython's name;
    None when it is not a Python."""
    names = [os.path.basename(exe)]
    try:
        names += [line.rsplit("/", 1)[-1] for line in _read("/proc/%d/maps" % pid).decode(errors="replace").splitlines()
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
    _permission(pid, uid)
    try:
        exe = os.readlink("/proc/%d/exe" % pid)
        cmdline = _read("/proc/%d/cmdline" % pid).split(b"\0")
        environ = dict(v.split(b"=", 1) for v in _read("/proc/%d/environ" % pid).split(b"\0") if b"=" in v)
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


def _same_file(a, b):
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _remote_debug_refusal(target):
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


def _our_site():
    """The directory our perf_trampoline package is installed in."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _script(args):
    """The file remote_exec runs: our _injected.py, run in a namespace of its own (nothing is
    left in the program's __main__)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_injected.py"), encoding="utf-8") as f:
        source = f.read()
    return ("exec(compile(%r, %r, 'exec'), {'__name__': '__perf_trampoline_attach__', 'ARGS': %r})\n"
            % (source, "<perf-trampoline %s>" % args["op"], args)).encode()


def _alive(pid):
    try:
        state = _read("/proc/%d/stat" % pid).decode(errors="replace").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _wait(target, directory, timeout, via_standby):
    """The target's answer, waiting at most ``timeout`` seconds; Refusal when it exits first
    or does not answer (the request is then withdrawn unless the target already took it)."""
    result = os.path.join(directory, "result")
    deadline = time.monotonic() + timeout
    withdrawn = False
    while True:
        if os.path.lexists(result):  # whole once there: the target renames it into place
            try:
                handoff.check_file(result, {target.uid})
            except handoff.UnsafeHandoff as e:
                raise Refusal("the answer of process %d is not a file of its own (%s): not trusted"
                              % (target.pid, e)) from None
            with os.fdopen(os.open(result, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), encoding="utf-8") as f:
                return json.load(f)
        if not _alive(target.pid):
            raise Refusal("process %d exited during the attach" % target.pid)
        if time.monotonic() > deadline:
            if withdrawn:
                raise Refusal("process %d took the request but gave no answer; check it with "
                              "`perf-trampoline doctor --pid %d`" % (target.pid, target.pid))
            try:
                os.rename(os.path.join(directory, "request"), os.path.join(directory, "withdrawn"))
            except FileNotFoundError:  # taken just now: the answer is coming
                withdrawn, deadline = True, time.monotonic() + timeout
                continue
            raise _Unanswered("process %d ran no Python code in its %s for %g s (%s): nothing was changed; try "
                              "again when it is busy running Python, or with a longer --timeout"
                              % (target.pid, "standby thread" if via_standby else "main thread", timeout,
                                 "a thread holding the GIL in C code?" if via_standby else
                                 "blocked in a long system call, a C extension or a lock?"))
        time.sleep(0.02)


class _Unanswered(Refusal):
    """The request was withdrawn before the target took it: its directory stays for the
    target's late run of the script to remove."""


def _check_remote(target):
    """Refuses when sys.remote_exec cannot reach an unprepared ``target`` from here."""
    if target.version < (3, 14):
        raise Refusal("process %d runs CPython %s, which cannot be attached to without preparation: start it with "
                      "PERF_TRAMPOLINE=standby (3.9-3.13; 3.14+ needs none)" % (target.pid, target.version_text))
    refusal = _remote_debug_refusal(target)
    if refusal:
        raise Refusal(refusal)
    if not _same_file("/proc/%d/root" % target.pid, "/"):
        raise Refusal("process %d runs in another root (a container or chroot): run perf-trampoline inside it"
                      % target.pid)


def _remote_exec(target, args, directory):
    """Hands ``args`` to the target through sys.remote_exec (3.14+)."""
    if not _same_file("/proc/%d/root%s" % (target.pid, directory), directory):
        raise Refusal("process %d does not see %s (another mount namespace): run perf-trampoline "
                      "in its namespace (nsenter -t %d -m)" % (target.pid, directory, target.pid))
    script = handoff.create(directory, "script.py", _script(dict(args, site=_our_site())), _owner(target),
                            {target.uid})
    handoff.check_file(script, {target.uid})  # again, just before the target reads it
    answer = _helper(target, script)
    if not answer.get("ok"):
        raise Refusal(_helper_refusal(target, answer))


def _standby_fifo(target):
    """The FIFO of a process started with PERF_TRAMPOLINE=standby, as we reach it, or None."""
    path = "/proc/%d/root%s" % (target.pid, standby.fifo_path(target.pid, target.uid))
    try:
        handoff.check_dir(os.path.dirname(path), {target.uid})
        st = os.lstat(path)
    except (OSError, handoff.UnsafeHandoff):
        return None
    if not stat.S_ISFIFO(st.st_mode) or st.st_uid not in (target.uid, 0) or st.st_mode & 0o077:
        return None
    return path


def _via_standby(target, fifo, args):
    """Hands ``args`` to the target's standby thread: one line (atomic below PIPE_BUF)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # ENXIO: nobody reads it, the process that made it is gone
        raise Refusal("process %d has a standby FIFO but no thread reading it: restart it with "
                      "PERF_TRAMPOLINE=standby" % target.pid) from None
    try:
        os.write(fd, json.dumps(args).encode() + b"\n")
    finally:
        os.close(fd)


def _owner(target):
    """Who the handed files belong to: root gives them to the target's own user, who alone
    may then change them (that user runs the code anyway)."""
    return target.uid if os.geteuid() == 0 else None


def _request(target, op, backend, timeout):
    """Asks the target to turn support on or off (standby when prepared, else remote_exec)
    and returns its answer."""
    fifo = _standby_fifo(target)
    if fifo is None:
        _check_remote(target)
    # Standby reaches into another root too: the directory is made where the target sees /tmp.
    base = "/proc/%d/root/tmp" % target.pid if fifo else "/tmp"
    directory = handoff.private_dir(base, owners={target.uid})
    keep = False
    try:
        owner = _owner(target)
        if owner is not None and owner != os.geteuid():
            os.chown(directory, owner, -1)
        handoff.create(directory, "request", b"", owner, {target.uid})
        args = {"op": op, "backend": backend, "dir": "/tmp/" + os.path.basename(directory) if fifo else directory}
        if fifo:
            _via_standby(target, fifo, args)
        else:
            _remote_exec(target, args, directory)
        return _wait(target, directory, timeout, fifo is not None)
    except _Unanswered:
        keep = True
        raise
    finally:
        if not keep:
            handoff.remove(directory)


def _helper(target, script):
    """Runs remote_exec with the target's own interpreter (it must be of the target's version);
    without ``script``, only checks that its build allows remote debugging."""
    try:
        out = subprocess.run([target.exe, "-I", "-S", "-c", _HELPER, str(target.pid)] + ([script] if script else []),
                             capture_output=True, timeout=60)
    except OSError as e:
        raise Refusal("cannot run process %d's interpreter %s here (%s): run perf-trampoline where the target "
                      "runs" % (target.pid, target.exe, e.strerror)) from None
    try:
        return json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "other", "text": out.stderr.decode(errors="replace").strip()[-300:] or "no answer"}


def _helper_refusal(target, answer):
    kind, text = answer.get("error"), answer.get("text", "")
    if kind == "build":
        return ("process %d's Python %s was built without remote debugging (--without-remote-debug): use "
                "PERF_TRAMPOLINE=standby at its start instead" % (target.pid, target.version_text))
    if kind == "gone":
        return "process %d exited during the attach" % target.pid
    if kind == "permission":
        return ("no permission to trace process %d (%s): run this as its user or as root, and check "
                "kernel.yama.ptrace_scope" % (target.pid, text))
    if "not enabled" in text:
        return ("process %d does not allow remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug "
                "at its start): restart it without, or with PERF_TRAMPOLINE=standby" % target.pid)
    if not _alive(target.pid):
        return "process %d exited during the attach" % target.pid
    return "sys.remote_exec on process %d failed: %s" % (target.pid, text)


def _change(pid, op, backend, timeout):
    target = inspect(pid)
    answer = _request(target, op, backend, timeout)
    if not answer.get("ok"):
        error = answer.get("error", "?")
        if error.startswith(("ImportError", "ModuleNotFoundError")):
            raise Refusal("perf_trampoline cannot be imported in process %d (%s): install it in the target's "
                          "environment" % (pid, error))
        raise Refusal("process %d could not turn support %s: %s" % (pid, "on" if op == "attach" else "off", error))
    return answer


def attach(pid, backend="perf", timeout=DEFAULT_TIMEOUT):
    """Turns support on in process ``pid``; returns its answer: ``already`` (it was on, with
    ``backend``), or it is on now."""
    return _change(pid, "attach", backend, timeout)


def detach(pid, timeout=DEFAULT_TIMEOUT):
    """Turns support off in process ``pid`` and removes our hook (calls cost what they did
    before); trampolines stay mapped, the perf map and jitdump stay for perf report."""
    return _change(pid, "detach", None, timeout)


def reachability(pid):
    """For ``doctor --pid``: [(level, text)] saying whether an attach to ``pid`` can work from
    here, and why not (levels as doctor's: "ok", "FAIL")."""
    lines = []
    try:
        target = inspect(pid)
        lines.append(("ok", "process %d runs CPython %s (%s), and this user may trace it"
                      % (pid, target.version_text, target.exe)))
        if _standby_fifo(target):
            return lines + [("ok", "prepared with PERF_TRAMPOLINE=standby: attach goes through its standby thread, "
                             "which answers while any of its threads lets the GIL go")]
        _check_remote(target)
        answer = _helper(target, None)
        if answer.get("error"):
            raise Refusal(_helper_refusal(target, answer))
    except Refusal as e:
        return lines + [("FAIL", str(e))]
    lines.append(("ok", "sys.remote_exec can reach it: the request runs when its main thread next runs Python code "
                  "(a main thread blocked in a long system call answers only when it returns)"))
    site = _our_site()
    if not _same_file("/proc/%d/root%s" % (pid, site), site):
        lines.append(("FAIL", "process %d does not see our installation %s (another mount namespace): install "
                      "perf_trampoline in its environment, or run perf-trampoline in its namespace" % (pid, site)))
    return lines


def say_attached(pid, answer, say):
    if answer.get("already"):
        say("support was already on in process %d (backend %s): recording anyway, leaving it on"
            % (pid, answer.get("backend")))
    else:
        say("support is on in process %d (Python %s, backend %s)" % (pid, answer.get("version"), answer.get("backend")))
    say("note: " + RUNNING_FRAMES_NOTE)


def main_attach(args, say):
    """``perf-trampoline attach PID``."""
    say_attached(args.pid, attach(args.pid, args.backend, args.timeout), say)
    return 0


def main_detach(args, say):
    """``perf-trampoline detach PID``."""
    answer = detach(args.pid, args.timeout)
    if answer.get("was_active"):
        say("support is off in process %d: our hook is gone, its calls cost what they did before; "
            "its perf map / jitdump stay for perf report" % args.pid)
    else:
        say("support was not on in process %d: nothing to do" % args.pid)
    return 0


def add_arguments(parser, backend=True):
    """The options attach and detach share with ``record -p``."""
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
                        help="how long to wait for the process to turn support on or off (default %(default)s s)")
    if backend:
        parser.add_argument("--backend", default="perf", choices=("perf", "perf_jit", "perf,perf_jit"),
                            help="what to write: the perf map (perf), the jitdump (perf_jit), or both")


def add_record_arguments(parser):
    """record's options for a running process (see live.py)."""
    parser.add_argument("-p", "--pid", type=int, help="record this running Python process instead of a command "
                        "(support is turned on in it for the recording, then off)")
    parser.add_argument("--duration", type=float, metavar="S",
                        help="with -p: stop after S seconds (default: at Ctrl-C or when the process exits)")
    add_arguments(parser, backend=False)
