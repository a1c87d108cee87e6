"""``perf-trampoline record -p PID``: turns support on in a running Python process, records it
with perf for a while, turns support off again (unless it was on before), and draws the flame
graph as ``record`` does for a command."""

import os
import signal
import subprocess

from . import attach, machine, modes
from .console import Failure, on_signals, say
from .record import process
from .session import Session


def _perf_record(perf, options, data, pid, duration):
    """Runs ``perf record -p pid`` until ``duration`` passes, Ctrl-C, or the process ends;
    returns the signal that stopped it early, or None."""
    caught = []
    proc = subprocess.Popen([perf, "record"] + options + ["-q", "-o", data, "-p", str(pid)])

    def stop(signum, frame):
        caught.append(signum)
        proc.send_signal(signal.SIGINT)

    with on_signals(stop):
        try:
            proc.wait(timeout=duration)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGINT)  # perf writes what it has and exits
            proc.wait()
    return caught[0] if caught else None


def record_pid(args, prog):
    """``record -p PID``: see the module's docstring."""
    if args.command:
        raise Failure("record takes either -p PID or a command, not both")
    mode, why = modes.choose_mode(args.mode, None)
    perf, version, text = machine.find_perf()
    if mode.name == "dwarf" and version < machine.PERF_FOR_JITDUMP:
        say("warning: " + machine.old_perf_warning(text))
    pid = args.pid
    answer = attach.attach(pid, mode.backend, args.timeout)
    say("mode %s (%s): %s" % (mode.name, mode.summary, why))
    attach.say_attached(pid, answer, say)
    if answer.get("already") and mode.backend not in answer.get("backend", "").split(","):
        say("warning: process %d writes %s, not the %s that --mode %s reads: its Python functions may stay unnamed"
            % (pid, answer.get("backend"), mode.backend, mode.name))
    session = Session(perf, args.output, args.format)
    data = os.path.join(session.work, "perf.data")
    try:
        options = mode.record_options(args.freq, args.stack_size)
        say("recording: perf record %s -p %d%s" % (" ".join(options), pid,
                                                   " for %g s" % args.duration if args.duration else " (Ctrl-C stops)"))
        try:
            stopped_by = _perf_record(perf, options, data, pid, args.duration)
        finally:
            if not answer.get("already"):
                _detach(pid, args.timeout)
        if not os.path.exists(data) or os.path.getsize(data) == 0:
            raise machine.cannot_record("%s doctor --pid %d" % (prog, pid))
        if stopped_by:
            say("recording stopped by %s" % signal.Signals(stopped_by).name)
        status, _ = process(session, data, mode, args, "python process %d (attached)" % pid, prog,
                            attach.RUNNING_FRAMES_NOTE)
        # The process's perf map / jitdump stay: it is alive, and perf report needs them.
        return status or 0
    finally:
        session.close()


def _detach(pid, timeout):
    """Turns support off again; the recording is still worth drawing if that fails."""
    try:
        attach.detach(pid, timeout)
        say("support is off again in process %d (our hook removed)" % pid)
    except attach.Refusal as e:
        say("warning: %s" % e)
