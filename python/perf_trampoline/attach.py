"""Turning perf-trampoline on and off in a Python process that is already running: what the
process is and whether it can be attached to (each refusal one line with its fix, the process
untouched: target.py), and the hand-over itself: a process started with
``PERF_TRAMPOLINE=standby`` reads the request from its FIFO (standby.py); any other CPython
3.14+ runs ``_injected.py`` through ``sys.remote_exec`` (remote.py). Either way it answers
through a result file; attach, detach and doctor --pid start here."""

import json
import os
import stat
import time

from . import handoff, host_copies, namespaces, remote, standby
from .target import Refusal, alive, inspect

# Said wherever an attach's profile is shown (the README explains it).
RUNNING_FRAMES_NOTE = ("frames already running when support came on have no trampoline: "
                       "only calls made after the attach show as Python functions")
DEFAULT_TIMEOUT = 10.0


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
        if not alive(target.pid):
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
    """The request was withdrawn before the target took it."""


def _standby_fifo(target):
    """The write end of the FIFO of a process started with PERF_TRAMPOLINE=standby, or None
    when it has none (also for a FIFO nobody reads: left by a killed process whose pid this
    one has now). It is looked for where the process made it: in its own /tmp, reached inside
    its root without following any link (a container's), under its own uid and pid (its user
    and pid namespace's). Refusal when what is there is not safe to write to."""
    shown = standby.directory(namespaces.own_uid(target.pid, target.uid))
    try:
        name = str(namespaces.own_pid(target.pid))
        directory = namespaces.open_dir(target.pid, shown)
    except OSError:  # no standby directory there, or the process is gone
        return None
    except namespaces.UnsafePath as e:
        raise Refusal(_untrusted(target, e)) from None
    try:
        handoff.check_dir_stat(shown, os.fstat(directory), {target.uid})
        try:
            st = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISFIFO(st.st_mode) or st.st_uid not in (target.uid, 0) or st.st_mode & 0o077:
            raise handoff.UnsafeHandoff("%s/%s is not a FIFO of its own (%s, uid %d)"
                                        % (shown, name, stat.filemode(st.st_mode), st.st_uid))
        try:
            fd = standby.open_writer(name, directory)
        except OSError:  # nobody reads it
            return None
        # Still the FIFO checked, and the target's (not another process's of the same pid
        # number, in a /tmp shared across pid namespaces).
        if not os.path.samestat(st, os.fstat(fd)) or not _has_open(target.pid, st):
            os.close(fd)
            return None
        return fd
    except handoff.UnsafeHandoff as e:
        raise Refusal(_untrusted(target, e)) from None
    finally:
        os.close(directory)


def _has_open(pid, st):
    """Whether process ``pid`` has the file ``st`` is the status of open."""
    fds = "/proc/%d/fd" % pid
    try:
        names = os.listdir(fds)
    except OSError:
        return False
    for name in names:
        try:
            if os.path.samestat(os.stat(os.path.join(fds, name)), st):
                return True
        except OSError:
            continue
    return False


def _untrusted(target, problem):
    return ("process %d's standby FIFO is not safe to use: %s (fix: remove that, then restart the program with "
            "PERF_TRAMPOLINE=standby); nothing was changed" % (target.pid, problem))


def _via_standby(fd, args):
    """Hands ``args`` to the target's standby thread: one line (atomic below PIPE_BUF)."""
    os.write(fd, json.dumps(args).encode() + b"\n")


def _request(target, op, backend, timeout):
    """Asks the target to turn support on or off (standby when prepared, else remote_exec)
    and returns its answer."""
    fifo = _standby_fifo(target)
    try:
        return _request_through(target, fifo, op, backend, timeout)
    finally:
        if fifo is not None:
            os.close(fifo)


def _request_through(target, fifo, op, backend, timeout):
    """``_request`` with ``fifo``, the standby FIFO's write end, or None for remote_exec."""
    if fifo is None:
        remote.check(target)
    # Standby reaches into another root too, and so does remote_exec into a container: the
    # directory is made where the target sees /tmp, inside its root.
    try:
        if fifo is not None or namespaces.other_mounts(target.pid):
            place = handoff.private_place_in(target.pid, {target.uid})
        else:
            place = handoff.private_place({target.uid})
    except (OSError, namespaces.UnsafePath, handoff.UnsafeHandoff) as e:
        raise Refusal("cannot make the hand-over directory in process %d's /tmp (%s): nothing was changed"
                      % (target.pid, e)) from None
    keep = False
    try:
        owner = target.file_owner
        if owner is not None and owner != os.geteuid():
            os.chown(place.path, owner, -1)
        handoff.create(place.path, "request", b"", owner, {target.uid})
        args = {"op": op, "backend": backend, "dir": place.seen}
        if fifo is not None:
            _via_standby(fifo, args)
        else:
            remote.send(target, args, place.path)
        return _wait(target, place.path, timeout, fifo is not None)
    except _Unanswered:
        # A standby request can be taken back: its thread ignores one whose directory is gone.
        # sys.remote_exec cannot: the target reads script.py when it next runs Python (a missing
        # one would print an error in it), and that late run removes the directory, emptied
        # of all else now (our package copied there, which it could not remove).
        if fifo is None:
            keep = True
            _empty_but_the_script(place)
        raise
    finally:
        if not keep:
            place.remove()


def _empty_but_the_script(place):
    try:
        fd = os.open(place.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        handoff.empty(fd, keep=("script.py",))
    except OSError:
        pass  # the late run may be removing it already
    finally:
        os.close(fd)


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
        contained = namespaces.foreign(pid)
        if contained is not None:
            lines.append(("note", "process %d runs in another %s (its own pid %d): record -p copies its perf map and "
                          "jitdump to /tmp under pid %d for the processing and removes them after (--keep keeps "
                          "them); for your own perf record: %s"
                          % (pid, "mount namespace" if contained.other_mounts else "pid namespace",
                             contained.own_pid, pid, "perf-trampoline fix-maps %d" % pid)))
            backend = host_copies.backend_on(contained) if contained.other_mounts else None
            if backend:
                return lines + [("ok", "support is on in it already (backend %s): record -p records it as it is"
                                 % backend)]
        fifo = _standby_fifo(target)
        if fifo is not None:
            os.close(fifo)
            return lines + [("ok", "prepared with PERF_TRAMPOLINE=standby: attach goes through its standby thread, "
                             "which answers while any of its threads lets the GIL go")]
        remote.check(target)
        answer = remote.helper(target, None)
        if answer.get("error"):
            raise Refusal(remote.helper_refusal(target, answer))
    except Refusal as e:
        return lines + [("FAIL", str(e))]
    lines.append(("ok", "sys.remote_exec can reach it: the request runs when its main thread next runs Python code "
                  "(a main thread blocked in a long system call answers only when it returns)"))
    if not remote.sees_our_site(target):
        lines.append(("note", "process %d does not see our installation (another mount namespace): attach copies "
                      "our package into a private directory in its /tmp for the hand-over, and removes it after"
                      % pid))
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
    add_arguments(parser, backend=False)
