"""``perf-trampoline clean``: removes (or lists) our perf maps and jitdumps whose process is gone."""

from . import leftovers
from .console import Failure, say


def clean(args, prog):
    """Removes (with ``--dry-run``: lists) our perf maps and jitdumps whose process is gone."""
    directory = leftovers.output_dir()
    try:
        found = leftovers.find(directory)
    except OSError as e:
        raise Failure("cannot read %s: %s" % (directory, e.strerror or e)) from None
    count = total = 0
    status = 0
    for path, pid, size in found:
        try:
            if not args.dry_run and not leftovers.remove(path, pid):
                continue  # its pid was taken since
        except OSError as e:
            say("cannot remove %s: %s" % (path, e.strerror or e))
            status = 1
            continue
        print("%s %s (%d bytes)" % ("would remove" if args.dry_run else "removed", path, size))
        count += 1
        total += size
    if count:
        print("%s %d perf maps and jitdumps of processes that are gone from %s (%d bytes)"
              % ("would remove" if args.dry_run else "removed", count, directory, total))
    else:
        print("no perf maps or jitdumps of processes that are gone in %s" % directory)
    return status
