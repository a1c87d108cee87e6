"""Files handed to another process (the code ``attach`` makes a live Python run): a private
directory (ours, 0700, never a link) and files created exclusively in it (0600, ``O_EXCL`` and
``O_NOFOLLOW``), each checked again just before it is used."""

import os
import stat

from . import namespaces


class UnsafeHandoff(Exception):
    """A directory or file we handed out is no longer what we made: someone else could
    have put their code there."""


def private_dir(base, owners=None):
    """A new directory under ``base``, mode 0700, that only we (and ``owners``, see
    ``check_dir``) can write."""
    import tempfile  # here: standby checks directories at start-up, where tempfile would cost ~2 ms

    path = tempfile.mkdtemp(prefix="perf-trampoline-attach-", dir=base)  # 0700, O_EXCL-like
    check_dir(path, owners)
    return path


class Place:
    """A private directory handed to a process: ``path`` for our own file operations, ``seen``
    as the process names it, ``remove()`` to take it away with what is in it."""

    def __init__(self, path, seen, remove):
        self.path, self.seen, self.remove = path, seen, remove


def private_place(owners=None):
    """A ``private_dir`` in our /tmp, for a process that sees our /tmp."""
    path = private_dir("/tmp", owners)
    return Place(path, path, lambda: remove(path))


def private_place_in(pid, owners=None):
    """A new private directory (0700) in the /tmp of process ``pid`` (a container's), made
    inside its root without following any link on the way (namespaces.open_dir). ``path``
    goes through a descriptor of the directory itself, so a link the process swaps in for it
    later is never followed either."""
    parent = namespaces.open_dir(pid, "/tmp")
    # os.urandom, not secrets.token_hex (the same bytes): standby imports this module at
    # start-up, and secrets would cost it some 12 ms on 3.11 (hmac, base64, re, enum).
    name = "perf-trampoline-attach-" + os.urandom(8).hex()
    try:
        os.mkdir(name, 0o700, dir_fd=parent)  # mkdirat: never through a link
    except BaseException:
        os.close(parent)
        raise
    fd = None

    def remove_it():
        try:
            _remove_at(parent, name)
        except OSError:
            pass
        if fd is not None:
            os.close(fd)
        os.close(parent)

    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        os.fchmod(fd, 0o700)  # whatever the umask
        place = Place("/proc/self/fd/%d/." % fd, "/tmp/" + name, remove_it)
        check_dir(place.path, owners)
    except BaseException:
        remove_it()  # what we made goes, whatever went wrong
        raise
    return place


def _remove_at(parent, name):
    """Removes directory ``name`` in the directory open at ``parent`` and what is in it, by
    descriptors (shutil.rmtree takes one from 3.11 only): a link in there is removed, never
    followed, and so is one swapped in for ``name`` itself (O_NOFOLLOW refuses it)."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        empty(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def empty(fd, keep=()):
    """Removes what is in the directory open at ``fd`` but the names in ``keep``, by
    descriptors as ``_remove_at``."""
    for entry in os.listdir(fd):
        if entry in keep:
            continue
        if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
            _remove_at(fd, entry)
        else:
            os.unlink(entry, dir_fd=fd)


def _owners(owners):
    return {os.geteuid()} | set(owners or ())


def check_dir(path, owners=None):
    """Raises UnsafeHandoff unless ``path`` is a directory (not a link) owned by us (or one of
    ``owners``: root handing files to the target's own user) that nobody else can write."""
    try:
        st = os.lstat(path)
    except OSError as e:
        raise UnsafeHandoff("%s: %s" % (path, e.strerror)) from None
    check_dir_stat(path, st, owners)


def check_dir_stat(path, st, owners=None):
    """``check_dir`` on ``st``, the status of directory ``path`` (which may have been opened
    some other way, e.g. inside a container's root)."""
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeHandoff("%s is not a directory (a link?)" % path)
    if st.st_uid not in _owners(owners):
        raise UnsafeHandoff("%s belongs to uid %d, not to us" % (path, st.st_uid))
    if st.st_mode & 0o077:
        raise UnsafeHandoff("%s has mode %o: others could change what is in it" % (path, stat.S_IMODE(st.st_mode)))


def check_file(path, owners=None):
    """Raises UnsafeHandoff unless ``path`` is a regular file (not a link, one name) of ours
    that only its owner can read or write, in a directory that passes ``check_dir``."""
    check_dir(os.path.dirname(path), owners)
    try:
        st = os.lstat(path)
    except OSError as e:
        raise UnsafeHandoff("%s: %s" % (path, e.strerror)) from None
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise UnsafeHandoff("%s is not a plain file of its own (a link?)" % path)
    if st.st_uid not in _owners(owners) or st.st_mode & 0o077:
        raise UnsafeHandoff("%s: owner uid %d, mode %o, not ours alone" % (path, st.st_uid, stat.S_IMODE(st.st_mode)))


def create(directory, name, data, owner=None, owners=None):
    """Writes ``data`` (bytes) to the new file ``directory/name``: created exclusively, never
    through a link, mode 0600; given to ``owner`` (a uid) when root hands it to another user."""
    check_dir(directory, owners)
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        if owner is not None and owner != os.geteuid():
            os.fchown(fd, owner, -1)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return path


def remove(directory):
    """Removes a directory ``private_dir`` made, and the files in it (never following links)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
