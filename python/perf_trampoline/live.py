"""``perf-trampoline record -p PID``: turns support on in a running Python process, records it
with perf for a while, turns support off again (unless it was on before), and draws the flame
graph as ``record`` does for a command. A process in a container gets its perf maps and
jitdumps copied to where perf on the host looks (host_copies.py) for the processing."""

import os
import signal
import subprocess
import time

from . import attach, host_copies, machine, modes, namespaces
from .console import Failure, on_signals, say
from .record import process
from .session import Session

# How often the processes under the recorded one are looked at while perf records: a
# container's child must be seen alive once for its files to be found after it exits.
WATCH_EVERY = 0.25


def _perf_record(perf, options, data, pid, duration, copies):
    """Runs ``perf record -p pid`` until ``duration`` passes, Ctrl-C, or the process ends,
    showing ``copies`` the process tree meanwhile; returns the signal that stopped it early,
    or None."""
    caught = []
    proc = subprocess.Popen([perf, "record"] + options + ["-q", "-o", data, "-p", str(pid)])

    def stop(signum, frame):
        caught.append(signum)
        proc.send_signal(signal.SIGINT)

    deadline = None if duration is None else time.monotonic() + duration
    with on_signals(stop):
        while proc.poll() is None:
            copies.watch(pid)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                proc.send_signal(signal.SIGINT)  # perf writes what it has and exits
                proc.wait()
                break
            try:
                proc.wait(timeout=WATCH_EVERY if left is None else min(WATCH_EVERY, left))
            except subprocess.TimeoutExpired:
                pass
    return caught[0] if caught else None


def _turn_on(pid, backend, timeout):
    """attach's answer for ``pid``; a process in another mount namespace whose support is on
    already (it has our outputs open) is recorded as it is, as attach would answer for it."""
    foreign = namespaces.foreign(pid)
    if foreign is not None and foreign.other_mounts:
        on = host_copies.backend_on(foreign)
        if on:
            return {"already": True, "backend": on}
    return attach.attach(pid, backend, timeout)


def _say_copies(made, notes, kept):
    for foreign, kind, path in made:
        say("process %d runs in another namespace (its own pid %d): its %s copied to %s%s"
            % (foreign.pid, foreign.own_pid, kind, path, " (kept, --keep)" if kept else " for the processing"))
    for note in notes:
        say("note: " + note)


def record_pid(args, prog):
    """``record -p PID``: see the module's docstring."""
    if args.command:
        raise Failure("record takes either -p PID or a command, not both")
    mode, why = modes.choose_mode(args.mode, None)
    perf, version, text = machine.find_perf()
    if mode.name == "dwarf" and version < machine.PERF_FOR_JITDUMP:
        say("warning: " + machine.old_perf_warning(text))
    pid = args.pid
    answer = _turn_on(pid, mode.backend, args.timeout)
    say("mode %s (%s): %s" % (mode.name, mode.summary, why))
    attach.say_attached(pid, answer, say)
    if answer.get("already") and mode.backend not in answer.get("backend", "").split(","):
        say("warning: process %d writes %s, not the %s that --mode %s reads: its Python functions may stay unnamed"
            % (pid, answer.get("backend"), mode.backend, mode.name))
    session = Session(perf, args.output, args.format)
    data = os.path.join(session.work, "perf.data")
    copies = host_copies.HostCopies()
    kept = args.keep  # the copies too: the kept recording needs them
    try:
        options = mode.record_options(args.freq, args.stack_size)
        say("recording: perf record %s -p %d%s" % (" ".join(options), pid,
                                                   " for %g s" % args.duration if args.duration else " (Ctrl-C stops)"))
        try:
            stopped_by = _perf_record(perf, options, data, pid, args.duration, copies)
        finally:
            if not answer.get("already"):
                _detach(pid, args.timeout)
        _say_copies(copies.copy(pid), copies.notes, args.keep)
        session.moved = host_copies.through_roots(host_copies.mapped_executables(f.pid for f in copies.foreign))
        if not os.path.exists(data) or os.path.getsize(data) == 0:
            raise machine.cannot_record("%s doctor --pid %d" % (prog, pid))
        if stopped_by:
            say("recording stopped by %s" % signal.Signals(stopped_by).name)
        status, kept = process(session, data, mode, args, "python process %d (attached)" % pid, prog,
                               attach.RUNNING_FRAMES_NOTE)
        # The process's perf map / jitdump stay: it is alive, and perf report needs them.
        return status or 0
    finally:
        if not kept:
            copies.remove()
        session.close()


def _detach(pid, timeout):
    """Turns support off again; the recording is still worth drawing if that fails."""
    try:
        attach.detach(pid, timeout)
        say("support is off again in process %d (our hook removed)" % pid)
    except attach.Refusal as e:
        say("warning: %s" % e)
