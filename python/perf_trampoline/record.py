"""``perf-trampoline record``: runs a command under ``perf record`` with support on in it,
then draws what was recorded, keeping the recording when the processing cannot finish."""

import os
import shlex
import shutil
import signal
import subprocess

from . import bring_along, interpreter, jit, machine, modes, streaming
from .console import Failure, interrupt, on_signals, say
from .session import Session, unlink


def record(args, prog):
    command = args.command
    if not command:
        raise Failure("record needs a command: %s record [-o out.svg] [--format FORMAT] -- python app.py [args ...]" % prog)
    _check_target(command)
    python = interpreter.python_of(command)
    probe = interpreter.probe_python(python, os.environ) if python else None
    chosen = bring_along.BRING  # where the interpreter cannot be told: the hook decides there
    if probe is not None and "error" not in probe:
        chosen, problem = bring_along.way(probe)
        if problem:
            raise Failure(problem)
        if chosen == bring_along.BRING:
            say(bring_along.describe(probe)[1])
        if python == shutil.which(command[0]):
            _check_script(command[1:])
        warning = interpreter.hook_warning(probe)
        if warning:
            say("warning: " + warning)
    elif python is None:
        say(bring_along.untold(command[0]))
    mode, why = modes.choose_mode(args.mode, probe)
    perf, version, text = machine.find_perf()
    if mode.name == "dwarf" and version < machine.PERF_FOR_JITDUMP:
        say("warning: " + machine.old_perf_warning(text))
    env, notes = modes.target_env(mode, os.environ)
    notes.append(jit.recording_note(mode.backend, probe, env))
    for note in filter(None, notes):
        say(note)
    say("mode %s (%s): %s" % (mode.name, mode.summary, why))

    session = Session(perf, args.output, args.format)
    runs_on = "CPython %s %s" % (probe["version"], probe["executable"]) if probe and "version" in probe else None
    if mode.name == "unwind":
        return _record_streaming(args, prog, perf, mode, env, chosen, session, runs_on)
    if args.duration is not None:
        raise Failure("--duration is for the unwind mode (the default)")
    data = os.path.join(session.work, "perf.data")
    keep_outputs = False  # the target's perf maps and jitdumps
    try:
        options = mode.record_options(args.freq, args.stack_size)
        say("recording: perf record %s -- %s" % (" ".join(options), " ".join(shlex.quote(w) for w in command)))
        caught = []
        with bring_along.environment(chosen, env) as tree_env:
            proc = subprocess.Popen([perf, "record"] + options + ["-q", "-o", data, "--"] + command, env=tree_env)

            def stop(signum, frame):
                caught.append(signum)
                proc.send_signal(signal.SIGINT)

            with on_signals(stop):
                returncode = proc.wait()
        if not os.path.exists(data) or os.path.getsize(data) == 0:
            raise machine.cannot_record("%s doctor" % prog)
        if caught:
            say("recording stopped by %s; the target %s" % (signal.Signals(caught[0]).name, _describe(returncode)))
        elif returncode != 0:
            say("the target %s" % _describe(returncode))

        status, keep_outputs = process(session, data, mode, args, _title(command), prog, interpreter=runs_on)
        if status is not None:
            return status
        return _status_of(returncode)
    finally:
        if not keep_outputs:
            session.remove_outputs()
        session.close()


def _record_streaming(args, prog, perf, mode, env, chosen, session, interpreter):
    """The unwind mode: perf's output unwound as it is written, no perf.data on disk unless
    --keep (streaming.py says why)."""
    command = args.command
    options = mode.record_options(args.freq, args.stack_size)
    say("recording: perf record %s -o - -- %s" % (" ".join(options), " ".join(shlex.quote(w) for w in command)))
    kept = session.stem + ".perf.data" if args.keep else None
    if kept and os.path.lexists(kept):
        unlink(kept)
    try:
        try:
            with bring_along.environment(chosen, env) as tree_env:
                rec = streaming.Recording(perf, options, command, tree_env, args.native, kept, args.duration)
                returncode = rec.run(on_signals)
        except OSError as e:
            raise Failure("%s: %s" % (e.filename, e.strerror or e) if e.filename else str(e)) from None
        except KeyboardInterrupt:
            # Nothing to keep for `report` (no perf.data), unless --keep made the copy.
            say("interrupted")
            return 130
        if rec.result is None:
            raise machine.cannot_record("%s doctor" % prog)
        session.pids.update(rec.result["pids"])
        for note in rec.result["notes"]:
            say("note: " + note)
        if rec.stopped_by == "duration":
            say("recording stopped after %g s (--duration); the target %s" % (args.duration, _describe(returncode)))
        elif rec.stopped_by:
            say("recording stopped by %s; the target %s" % (rec.stopped_by, _describe(returncode)))
        elif returncode != 0:
            say("the target %s" % _describe(returncode))
        session.write(rec.profile, "%s (%s mode)" % (_title(command), mode.name), args.top, interpreter=interpreter)
        if kept:
            # perf's own DWARF unwinder stops at the trampolines (no CFI): ours reads it again.
            say("kept %s (perf's pipe format) and the perf maps it needs: %s report %s"
                % (kept, prog, shlex.quote(kept)))
        return _status_of(returncode)
    finally:
        if not kept:
            session.remove_outputs()
        session.close()
def process(session, data, mode, args, title, prog, note=None, interpreter=None):
    """Draws the flame graph of the recording ``data`` and prints the top functions (with
    ``note`` under them); returns (exit status when processing failed else None, whether the
    recording and the outputs it needs were kept)."""
    try:
        with on_signals(interrupt):
            say("recorded %.1f MB" % (os.path.getsize(data) / 1e6))
            if mode.name == "unwind":
                samples_from, profile = data, session.unwind(data, args.native)
            else:
                session.scan(data)
                samples_from = session.inject(data, keep_jitted=args.keep)
                profile = session.read(samples_from, args.native)
            session.write(profile, "%s (%s mode)" % (title, mode.name), args.top, note, interpreter)
    except (KeyboardInterrupt, Failure) as e:
        # The recording is all there: keep it, and what perf needs to read it, for `report`.
        kept = _keep(data, session.stem + ".perf.data")
        say("%s; the recording is kept in %s (and the perf maps or jitdumps it needs); finish with: %s report %s -o %s%s"
            % ("interrupted" if isinstance(e, KeyboardInterrupt) else e, kept, prog, shlex.quote(kept),
               shlex.quote(session.output), "".join(" --format " + f for f in session.chosen)))
        return (130 if isinstance(e, KeyboardInterrupt) else e.status), True
    if not args.keep:
        return None, False
    kept = [_keep(data, session.stem + ".perf.data")]
    if samples_from != data:
        kept.append(_keep(samples_from, session.stem + ".perf.jit.data"))
    # perf's own DWARF unwinder stops at the trampolines (no CFI): ours reads it again.
    again = ("%s report %s" % (prog, kept[-1]) if mode.name == "unwind" else "perf report -i " + kept[-1])
    needs = ("the jitted code in %s/" % session.jitted if samples_from != data
             else "the perf maps and jitdumps")
    say("kept %s, and %s it needs: %s" % (" and ".join(kept), needs, again))
    return None, True


def _check_target(command):
    """Fails early, before perf starts, when the command or the Python script it names is missing."""
    exe = command[0]
    if os.sep in exe:
        if not os.path.exists(exe):
            raise Failure("%s: no such file" % exe, 127)
        if not os.access(exe, os.X_OK) or os.path.isdir(exe):
            raise Failure("%s: not an executable file (run it as `python %s`?)" % (exe, exe), 126)
    elif shutil.which(exe) is None:
        raise Failure("%s: command not found (not on PATH)" % exe, 127)


def _check_script(python_args):
    """The script ``python python_args...`` would run must exist (``-m``/``-c``/stdin aside)."""
    args = iter(python_args)
    for a in args:
        if a in ("-m", "-c", "-") or a.startswith(("-m", "-c")):
            return
        if a in ("-X", "-W", "--check-hash-based-pycs"):
            next(args, None)
        elif not a.startswith("-"):
            if not os.path.exists(a):
                raise Failure("%s: no such file (the script python would run)" % a, 127)
            return


def _title(command):
    """The flame graph's title for a recorded command."""
    return " ".join([os.path.basename(command[0])] + command[1:])


def _status_of(returncode):
    """The shell's view of a status: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode):
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        return "was killed by %s" % name
    return "exited with status %d" % returncode


def _keep(path, dest):
    os.replace(path, dest)
    return dest
