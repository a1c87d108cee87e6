"""``perf-trampoline fix-maps PID...``: for people who run ``perf record`` on the host
themselves, copies the perf maps and jitdumps of processes in containers to where perf on the
host looks for them, so that ``perf report`` names their Python frames."""

import os

from . import host_copies
from .console import Failure, say


def fix_maps(args, prog):
    """Copies each process's (and its descendants') perf map and jitdump to the host's /tmp
    under its host pid; the copies stay (``clean`` removes them once the process is gone)."""
    copies = host_copies.HostCopies()
    for pid in args.pids:
        if not os.path.exists("/proc/%d" % pid):
            raise Failure("no process %d (check the pid: `ps -e` lists them)" % pid)
        copies.watch(pid)
    if not copies.foreign:
        say("%s: in our own namespaces: perf finds %s files as they are"
            % (", ".join("process %d" % p for p in args.pids), "its" if len(args.pids) == 1 else "their"))
        return 0
    status = 0
    for foreign, kind, path in copies.copy():
        say("process %d (its own pid %d): %s copied to %s" % (foreign.pid, foreign.own_pid, kind, path))
    for note in copies.notes:
        say("warning: " + note)
        status = 1
    if not copies.made:
        say("no perf map or jitdump of ours in %s: is support on there (PERF_TRAMPOLINE=perf, perf_jit)?"
            % ", ".join("process %d" % p for p in args.pids))
        return 1
    say("now: perf report (perf map; run fix-maps again for functions that ran since), or %s inject -i "
        "perf.data -o perf.jit.data (jitdump; plain perf inject looks in the container's path); "
        "%s clean removes the copies once the processes are gone" % (prog, prog))
    return status
