"""A process in another pid, user or mount namespace (a container) as seen from the host: its
own pid and uid, and files inside its root reached without following any link it could have
planted."""

import errno
import os
import stat


def _status_field(pid, name):
    with open("/proc/%d/status" % pid, "rb") as f:
        for line in f:
            if line.startswith(name.encode() + b":"):
                return line.split()[1:]
    return []


def own_pid(pid):
    """The pid process ``pid`` (a pid here) has in its own, innermost pid namespace
    (``NSpid``'s last field); the same number when it shares ours. OSError when it is gone."""
    fields = _status_field(pid, "NSpid")
    return int(fields[-1]) if fields else pid  # kernels before 4.1 have no NSpid: no namespaces seen


def own_uid(pid, uid):
    """The uid that ``uid`` (one of ours) is inside process ``pid``'s user namespace, by its
    uid_map as we read it; ``uid`` itself when the map has none for it."""
    try:
        with open("/proc/%d/uid_map" % pid, "rb") as f:
            for line in f:
                inside, outside, count = (int(x) for x in line.split())
                if outside <= uid < outside + count:
                    return inside + uid - outside
    except OSError:
        pass
    return uid


def _ns(pid, kind):
    return os.stat("/proc/%s/ns/%s" % (pid, kind)).st_ino


def other_mounts(pid):
    """Whether process ``pid`` sees another file system tree than we do (its own mount
    namespace or root: a container, a chroot), so that its /tmp is not ours."""
    return _ns(pid, "mnt") != _ns("self", "mnt") or not os.path.samestat(
        os.stat("/proc/%d/root" % pid), os.stat("/proc/self/root"))


class Foreign:
    """A process whose perf map and jitdump perf on the host cannot find as they are: it is
    ``pid`` here and ``own_pid`` where it runs, and its /tmp may not be ours."""

    def __init__(self, pid, own_pid, other_mounts):
        self.pid, self.own_pid, self.other_mounts = pid, own_pid, other_mounts

    def __repr__(self):
        return "Foreign(%d, own pid %d%s)" % (self.pid, self.own_pid, ", other mounts" if self.other_mounts else "")


def foreign(pid):
    """A Foreign for process ``pid`` when it lives in another pid or mount namespace, else
    None (also when it is gone)."""
    try:
        inner, mounts = own_pid(pid), other_mounts(pid)
    except OSError:
        return None
    if inner == pid and not mounts:
        return None
    return Foreign(pid, inner, mounts)


class UnsafePath(Exception):
    """A path inside a process's root that we will not use: it holds a link, leaves the root,
    or is not what we expect."""


def _parts(path):
    """The components of an absolute path inside a root; UnsafePath for ``..`` or anything
    that is not a plain name."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not path.startswith("/") or ".." in parts:
        raise UnsafePath("%s: not a plain absolute path" % path)
    return parts


def open_dir(pid, path):
    """An O_PATH descriptor of directory ``path`` as process ``pid`` sees it, walked one
    component at a time from its root with O_NOFOLLOW: a symbolic link anywhere (which the
    kernel would resolve against *our* root, not the container's) is refused."""
    # A walk rather than openat2(RESOLVE_IN_ROOT): it needs no system call Python lacks,
    # and refusing links and ".." outright leaves nothing to resolve.
    fd = os.open("/proc/%d/root" % pid, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in _parts(path):
            try:
                nxt = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except NotADirectoryError:
                raise UnsafePath("%s in process %d's root: %s is a link or not a directory"
                                 % (path, pid, name)) from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def find_file(pid, path):
    """The path of the regular file ``path`` names as process ``pid`` sees it, reached with
    no link on the way, or None. perf writes the mappings of a process that ran before it
    started as /proc/PID/maps shows them to perf, where a file perf's root cannot reach is
    named from the top of the process's mount namespace, the container's directory in it
    included: then the longest tail of ``path`` that is such a file there is taken."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    for start in range(len(parts)):
        tail = "/" + "/".join(parts[start:])
        try:
            directory = open_dir(pid, "/" + "/".join(parts[start:-1]))
        except (OSError, UnsafePath):
            continue
        try:
            st = os.stat(parts[-1], dir_fd=directory, follow_symlinks=False)
        except OSError:
            continue
        finally:
            os.close(directory)
        if stat.S_ISREG(st.st_mode):
            return tail
    return None


def read_file(pid, path):
    """The bytes of the regular file ``path`` as process ``pid`` sees it (never through a
    link, never a FIFO or device); UnsafePath or OSError when it cannot be."""
    parts = _parts(path)
    directory = open_dir(pid, "/" + "/".join(parts[:-1]))
    try:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        except OSError as e:
            if e.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
                raise UnsafePath("%s in process %d's root is a symbolic link" % (path, pid)) from None
            raise
    finally:
        os.close(directory)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise UnsafePath("%s in process %d's root is not a regular file" % (path, pid))
        return f.read()


_PR_CAPBSET_DROP = 24
_CAP_SYS_CHROOT = 18


def keep_perf_in_our_mounts():
    """For ``preexec_fn`` of perf inject and perf script: perf enters the mount namespace of a
    live process of the recording to open the files it names (jitdumps, jitted images), where
    the host copies we make (host_copies.py) and our jitted images are not. setns() into a
    mount namespace needs CAP_SYS_CHROOT: without it in the bounding set, the perf that root
    execs here fails that step, and opens everything in our own file system instead."""
    import ctypes

    # Not root: PR_CAPBSET_DROP fails, and perf could not enter another namespace anyway.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_CAPBSET_DROP, _CAP_SYS_CHROOT, 0, 0, 0)
