"""Perf maps and jitdumps of processes in other namespaces (containers), copied to where perf on
the host looks for them: ``/tmp/perf-<pid>.map`` and ``/tmp/jit-<pid>.dump`` under the pid the
host knows. The process writes them in its own /tmp under its own pid, which perf on the host
never opens; its files are only read (never through a link), and the copies are ours."""

import os
import stat
import tempfile

from . import _native, namespaces

# The backend each of our outputs belongs to (a process keeps its outputs' ends mapped).
_BACKEND = {"perf map": "perf", "jitdump": "perf_jit"}


def descendants(pid):
    """The live processes below ``pid`` (children, theirs, ...)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def backend_on(foreign):
    """The backend support writes in the Foreign process, from the outputs it has mapped
    ("perf", "perf_jit", both), or None when it has none of ours open."""
    try:
        with open("/proc/%d/maps" % foreign.pid) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    kinds = set()
    for line in lines:
        path = line.split(None, 5)[5:]
        ours = _native.parse_output_name(os.path.basename(path[0])) if path else None
        if ours and ours[1] == foreign.own_pid:
            kinds.add(_BACKEND[ours[0]])
    return ",".join(k for k in ("perf", "perf_jit") if k in kinds) or None


def through_roots(executables):
    """{(pid, path): the same file through /proc/<pid>/root} for the (pid, path) files mapped
    by processes in another mount namespace that are still running, under the path given and
    the one the process names it by: perf (kept out of their namespaces by
    namespaces.keep_perf_in_our_mounts) and our unwinder open them there."""
    moved, other = {}, {}
    for pid, path in executables:
        if pid not in other:
            found = namespaces.foreign(pid)
            other[pid] = found is not None and found.other_mounts
        if other[pid]:
            inside = namespaces.find_file(pid, path)
            if inside is not None:
                moved[(pid, path)] = moved[(pid, inside)] = "/proc/%d/root%s" % (pid, inside)
    return moved


def mapped_executables(pids):
    """{(pid, path)} of the files the processes ``pids`` have mapped executable, as
    /proc/PID/maps names them here (as perf names those mapped before it started)."""
    found = set()
    for pid in pids:
        try:
            with open("/proc/%d/maps" % pid) as f:
                for line in f:
                    fields = line.split(None, 5)
                    if len(fields) == 6 and "x" in fields[1] and fields[5].startswith("/"):
                        found.add((pid, fields[5].rstrip("\n")))
        except OSError:
            continue
    return found


class HostCopies:
    """The copies one command makes for the processes it was shown (``watch``): made at
    ``copy``, each replacing any earlier one atomically, and taken away by ``remove``."""

    def __init__(self):
        self.seen = {}  # host pid -> Foreign, or None for a process that shares our namespaces
        self.made = []  # (path, its (st_dev, st_ino)) of each copy
        self.notes = []

    def watch(self, pid):
        """Notes process ``pid`` and its descendants: a child's own pid is lost once it exits,
        and its files outlive it."""
        for p in [pid] + descendants(pid):
            if p not in self.seen:
                self.seen[p] = namespaces.foreign(p)

    @property
    def foreign(self):
        return [f for f in self.seen.values() if f is not None]

    def copy(self, via=None):
        """Copies the perf map and jitdump of every foreign process seen, reading each through
        its own root, or through ``via``'s (the process recorded) once it has exited; returns
        [(Foreign, kind, path)] of the copies made."""
        made = []
        for f in self.foreign:
            for kind in ("perf map", "jitdump"):
                inside = str(_native.output_path(kind, f.own_pid, _native.PERF_MAP_DIR))
                data = None
                for reader in dict.fromkeys(p for p in (f.pid, via) if p is not None):
                    try:
                        data = namespaces.read_file(reader, inside)
                        break
                    except FileNotFoundError:
                        continue
                    except (OSError, namespaces.UnsafePath) as e:
                        self.notes.append("process %d's %s not copied: %s" % (f.pid, inside, e))
                        break
                if data is None:
                    continue
                dest = _native.output_path(kind, f.pid, _native.PERF_MAP_DIR)
                try:
                    made.append((f, kind, self._write(dest, data)))
                except OSError as e:
                    self.notes.append("process %d's %s not copied to %s: %s" % (f.pid, inside, dest, e.strerror or e))
        return made

    def _write(self, dest, data):
        """Puts ``data`` at ``dest`` whole or not at all: a new file of ours (created exclusively,
        mode 0600, in the same directory), renamed over whatever was there (a link is replaced,
        never followed)."""
        dest = str(dest)
        fd, tmp = tempfile.mkstemp(prefix=".perf-trampoline-copy-", dir=os.path.dirname(dest))
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
            os.replace(tmp, dest)
        except BaseException:
            os.unlink(tmp)
            raise
        finally:
            os.close(fd)
        self.made.append((dest, (st.st_dev, st.st_ino)))
        return dest

    def remove(self):
        """Removes the copies made, each only if it is still the file we wrote."""
        for path, ident in self.made:
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == ident:
                    os.unlink(path)
            except FileNotFoundError:
                pass
        self.made = []
