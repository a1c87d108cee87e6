"""``PERF_TRAMPOLINE=standby``: a process prepared at start-up so that ``perf-trampoline
attach``/``detach``/``record -p`` can turn support on and off later (the only way on CPython
3.9-3.13, which has no ``sys.remote_exec``; on 3.14+ it also serves processes that disable
remote debugging).

The trigger is a FIFO, ``/tmp/perf-trampoline-standby-<uid>/<pid>``, read by a thread
of ours that sits blocked in ``read(2)``. Why not a signal: SIGUSR1/SIGUSR2 belong to servers
(gunicorn, uwsgi); a real-time signal handled in C can be replaced by the program's own
handlers, its handler could only hand over through ``Py_AddPendingCall``, which takes a lock
(not safe in a signal handler), and pending calls run in the main thread only, which may be
blocked in a system call for good. A thread
blocked in ``read(2)`` takes no CPU, never wakes until written to, holds no GIL (so the
program's threads never wait for it), and answers whatever the other threads are doing, as
long as one of them lets the GIL go now and then. Forked children start a thread of their own.
"""

import _thread
import atexit
import os
import stat
import sys

from . import handoff


def directory(uid):
    return "/tmp/perf-trampoline-standby-%d" % uid


def fifo_path(pid, uid):
    return os.path.join(directory(uid), str(pid))


def _say(msg):
    sys.stderr.write("perf_trampoline: %s\n" % msg)


def _private_dir():
    """Our standby directory, made if need be; UnsafeHandoff when it is not ours alone."""
    path = directory(os.geteuid())
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    handoff.check_dir(path)
    return path


_fd = None  # the FIFO, opened read-write so that read(2) blocks instead of ending at EOF


def open_writer(path, dir_fd=None):
    """The FIFO's write end; OSError (ENXIO) when nobody reads it: its process is gone,
    whatever pid namespace it lived in."""
    return os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _sweep(directory):
    """Removes the FIFOs of processes that died without removing theirs (killed)."""
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        try:
            if stat.S_ISFIFO(os.lstat(path).st_mode):
                os.close(open_writer(path))
        except OSError:
            try:
                os.unlink(path)
            except OSError:
                pass


def arm():
    """Makes this process's FIFO and starts the thread that reads it; a problem prints one
    line, and the program runs without standby."""
    global _fd
    try:
        directory = _private_dir()
        _sweep(directory)
        path = os.path.join(directory, str(os.getpid()))
        os.mkfifo(path, 0o600)
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            raise handoff.UnsafeHandoff("%s is not the FIFO we made" % path)
    except (OSError, handoff.UnsafeHandoff) as e:
        _say("PERF_TRAMPOLINE=standby: %s (running without standby)" % e)
        return
    _fd = fd
    atexit.register(remove)
    # A bare thread, not threading.Thread: threading brings functools and collections along on
    # 3.11 (about 3 ms more for every armed process). Like a daemon thread, it never holds up
    # the exit: it waits in read(2), without the GIL.
    _thread.start_new_thread(_serve, (fd,))


def _serve(fd):
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            _handle(line)


def _handle(line):
    """One request from ``attach``: {"op", "backend", "dir"}, the answer going into "dir",
    a directory that must be ours alone (whoever can write our FIFO is us or root anyway)."""
    try:
        # Imported at the first request, not at start-up: json brings re along, 3-4 ms that
        # every armed process would pay. (A program's own json.py first on sys.path would now
        # be found instead; the request is then ignored with one line, the program goes on.)
        import json

        from . import _injected

        request = json.loads(line)
        if not os.path.lexists(request["dir"]):
            return  # withdrawn: the attacher gave up waiting and took its directory away
        handoff.check_dir(request["dir"])
        _injected.main({"op": request["op"], "backend": request.get("backend"), "dir": request["dir"],
                        "site": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    except Exception as e:  # the program must go on whatever we were sent
        _say("standby: ignored a request (%s)" % e)


def _after_fork_in_child():
    """A forked child has no thread of ours: it gets its own FIFO and thread."""
    global _fd
    if _fd is not None:
        os.close(_fd)
        _fd = None
        arm()


os.register_at_fork(after_in_child=_after_fork_in_child)


def remove():
    """Removes this process's FIFO (at exit)."""
    try:
        os.unlink(fifo_path(os.getpid(), os.geteuid()))
    except OSError:
        pass
