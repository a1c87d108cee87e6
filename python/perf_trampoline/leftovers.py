"""Perf maps and jitdumps whose process is gone: counted by ``doctor``, removed by ``clean``.

A leftover is ours (our uid, a regular file, named ``perf-<pid>.map`` or ``jit-<pid>.dump``)
and no process has its pid any more. A live process's files are never touched, nor anyone
else's. Pids wrap, so a leftover's name may be taken again any time: a new process with that
pid starts it over itself, and until then perf would read it for that process.
"""

import os
import stat
import time

from . import _native

# A file written less than this before its pid was found free may belong to a process that
# took the pid since (file times come from a clock that lags behind): it is left alone.
RECENT_NS = 1_000_000_000


def output_dir():
    """Where our files go: the extension's answer (``$PERF_TRAMPOLINE_DIR``, else /tmp)."""
    return str(_native.output_dir())


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OverflowError:
        return False  # no pid is that large
    return True


def _size_if_left_over(path, pid):
    """The size of ``path`` if it is a leftover of process ``pid``, else None."""
    checked = time.time_ns()
    if _alive(pid):
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mtime_ns > checked - RECENT_NS:
        return None
    return st.st_size


def find(directory):
    """[(path, pid, size)] of the leftovers in ``directory``, by name. Raises OSError when
    the directory cannot be read."""
    found = []
    for name in sorted(os.listdir(directory)):
        ours = _native.parse_output_name(name)
        if ours:
            pid = ours[1]
            path = os.path.join(directory, name)
            size = _size_if_left_over(path, pid)
            if size is not None:
                found.append((path, pid, size))
    return found


def remove(path, pid):
    """Removes ``path`` if it is (still) a leftover of ``pid``; returns whether it did. Each
    file is checked again right before: its pid may have been taken since it was found."""
    if _size_if_left_over(path, pid) is None:
        return False
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
