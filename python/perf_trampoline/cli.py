"""The perf-trampoline command: ``record`` a Python program into a flame graph, ``report`` an
existing perf.data the same way, ``doctor`` to check the set-up, ``clean`` to remove the perf
maps and jitdumps of processes that are gone."""

import argparse
import contextlib
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from . import attach, checks, leftovers, unwound
from .stacks import Profile

# Signals that stop a recording (perf then writes what it has) or abort the processing.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Failure(Exception):
    """An error the user can act on: the message says what to do; ``status`` is the exit status."""

    def __init__(self, message, status=2):
        Exception.__init__(self, message)
        self.status = status


def say(msg):
    sys.stderr.write("perf-trampoline: %s\n" % msg)
    sys.stderr.flush()


def _find_perf():
    """perf's path and version text."""
    perf = shutil.which("perf")
    if perf is None:
        raise Failure("perf is not on PATH; " + checks.INSTALL_PERF)
    version, text = checks.perf_version(perf)
    if version is None:
        raise Failure("%s does not run (%s); %s" % (perf, text, checks.INSTALL_PERF))
    return perf, version, text


@contextlib.contextmanager
def _on_signals(handler):
    """Runs the block with ``handler`` for STOP_SIGNALS; a signal someone chose to ignore
    (nohup, background jobs) stays ignored."""
    old = {}
    for s in STOP_SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:
            old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


class Progress:
    """Stage lines on stderr; a running count on a terminal, one line every few seconds in logs."""

    def __init__(self, what):
        self.what = what
        self.tty = sys.stderr.isatty()
        self.start = self.last = time.monotonic()
        say(what + " ...")

    def tick(self, text):
        now = time.monotonic()
        if now - self.last >= (0.2 if self.tty else 5.0):
            self.last = now
            sys.stderr.write(("\r  %s " if self.tty else "  %s\n") % text)
            sys.stderr.flush()

    def done(self, text="done"):
        if self.tty:
            sys.stderr.write("\r\033[K")
        say("%s: %s (%.1f s)" % (self.what, text, time.monotonic() - self.start))


# "... PERF_RECORD_MMAP2 123/123: [...]: r-xp /tmp/jit-123.dump" and the like.
_DUMP = re.compile(r"PERF_RECORD_MMAP2? .*\]: \S+ (?P<path>.*/jit-(?P<pid>\d+)\.dump)$")
_JITTED = re.compile(r"PERF_RECORD_MMAP2? .*/jitted-\d+-\d+\.so$")
_PIDS = re.compile(r"PERF_RECORD_COMM.*:(?P<comm_pid>\d+)/\d+$|PERF_RECORD_FORK\((?P<fork_pid>\d+):|^\s*(?P<pid>\d+)\s*$")


SAVED = ".perf-trampoline-saved"


class Session:
    """Turns one recording into a flame graph, with a scratch directory beside the output.
    ``close()`` removes it and the jitted-*.so files perf inject wrote for us, and puts back
    the ones we set aside."""

    def __init__(self, perf, svg):
        self.perf = perf
        self.svg = os.path.abspath(svg)
        if not os.path.isdir(os.path.dirname(self.svg)):
            raise Failure("%s: its directory does not exist" % svg)
        self.stem = self.svg[:-4] if self.svg.endswith(".svg") else self.svg
        self.folded = self.stem + ".folded"
        self.work = tempfile.mkdtemp(prefix=".perf-trampoline-", dir=os.path.dirname(self.svg))
        self.pids = set()   # every process of the recording
        self.dumps = set()  # their jitdumps (the jit markers in the recording)
        self.injected = False
        self.jitted = []    # jitted-*.so files our perf inject wrote
        self.saved = []     # jitted-*.so files that were there before it, set aside

    def _perf(self, args, what, stdout=subprocess.DEVNULL):
        with tempfile.TemporaryFile() as err:
            status = subprocess.call([self.perf] + args, stdout=stdout, stderr=err)
            if status != 0:
                err.seek(0)
                raise Failure("%s failed (status %d): %s" % (what, status, err.read().decode(errors="replace")[-2000:]))

    def scan(self, data):
        """Finds the recording's processes and jitdumps, and whether it is injected already."""
        with tempfile.TemporaryFile() as out:
            self._perf(["script", "-i", data, "-F", "pid", "--show-task-events", "--show-mmap-events"],
                       "perf script (side-band events)", stdout=out)
            out.seek(0)
            for raw in out:
                line = raw.decode(errors="replace").rstrip("\n")
                m = _DUMP.search(line)
                if m:
                    self.dumps.add(m.group("path"))
                    self.pids.add(int(m.group("pid")))
                elif _JITTED.search(line):
                    self.injected = True
                m = _PIDS.search(line)
                if m:
                    self.pids.add(int(next(g for g in m.groups() if g)))

    def inject(self, data):
        """Runs perf inject --jit when the recording has jitdumps and is not injected yet;
        returns the file to read samples from."""
        if not self.dumps or self.injected:
            return data
        # perf inject writes jitted-<pid>-<n>.so afresh, with new build ids: an injected file
        # made earlier from the same dumps would lose its code. Set those aside until close().
        for path in self._jitted_files():
            os.replace(path, path + SAVED)
            self.saved.append(path)
        progress = Progress("perf inject --jit")
        out = os.path.join(self.work, "perf.jit.data")
        try:
            # perf inject also copies every jitted-*.so into the build-id cache: a cache of its
            # own keeps those out of ~/.debug (perf finds them by path).
            self._perf(["--buildid-dir", os.path.join(self.work, "buildid"), "inject", "--jit", "-i", data, "-o", out],
                       "perf inject --jit")
        finally:
            self.jitted = list(self._jitted_files())
        progress.done("%d functions" % len(self.jitted))
        return out

    def _jitted_files(self):
        for dump in self.dumps:
            pid = os.path.basename(dump)[4:-5]
            for path in glob.glob(os.path.join(glob.escape(os.path.dirname(dump)), "jitted-%s-*.so" % pid)):
                yield path

    def read(self, data, native):
        """Folds the samples of ``data`` (perf script) into a Profile."""
        profile = Profile(native)
        progress = Progress("perf script")
        with tempfile.TemporaryFile() as err:
            # --no-inline: without addr2line (sid's root has none) perf 7.2 sometimes stops
            # unwinding at the first trampoline while looking for inlined frames.
            proc = subprocess.Popen(
                [self.perf, "script", "-i", data, "-F", "comm,pid,tid,ip,sym,dso", "--max-stack", "1024", "--no-inline"],
                stdout=subprocess.PIPE, stderr=err, encoding="utf-8", errors="replace")
            try:
                profile.add_perf_script(self._ticking(proc.stdout, progress, profile))
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.stdout.close()
                proc.wait()
            if proc.returncode != 0:
                err.seek(0)
                raise Failure("perf script failed (status %d): %s"
                              % (proc.returncode, err.read().decode(errors="replace")[-2000:]))
        progress.done("%d samples" % profile.samples)
        return profile

    def unwind(self, data, native):
        """Folds the samples of ``data`` (perf map, ``--call-graph dwarf``) through our unwinder."""
        progress = Progress("unwinding")
        try:
            profile, result = unwound.read(data, native, lambda n: progress.tick("%d samples" % n))
        except ValueError as e:
            raise Failure(str(e))
        self.pids.update(result["pids"])
        for note in result["notes"]:
            say("note: " + note)
        progress.done("%d samples" % profile.samples)
        return profile

    @staticmethod
    def _ticking(lines, progress, profile):
        for n, line in enumerate(lines):
            if n % 4096 == 0:
                progress.tick("%d samples" % profile.samples)
            yield line

    def write(self, profile, title, top, note=None):
        """Writes the flame graph and the folded stacks, prints the top functions (and
        ``note``, which the flame graph's title carries too); False when there was nothing
        to draw."""
        if not profile.samples:
            say("no samples: nothing to draw")
            return False
        from ._native import flamegraph_svg

        folded = profile.folded()
        _write_atomically(self.svg, flamegraph_svg(folded, title + (" - " + note if note else "")))
        _write_atomically(self.folded, folded)
        say("wrote %s (flame graph) and %s (folded stacks)" % (self.svg, self.folded))
        if not profile.in_python:
            say("warning: no sample is in a Python function: was perf-trampoline on in the target "
                "(PERF_TRAMPOLINE=perf or perf_jit), and are its /tmp/perf-<pid>.map or jit-<pid>.dump files still there?")
        sys.stdout.write(profile.table(top))
        if note:
            sys.stdout.write("note: %s\n" % note)
        sys.stdout.flush()
        return True

    def close(self):
        for path in self.jitted:
            _unlink(path)
        for path in self.saved:
            os.replace(path + SAVED, path)
        shutil.rmtree(self.work, ignore_errors=True)


def _write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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


def record(args, prog):
    command = args.command
    if not command:
        raise Failure("record needs a command: %s record [-o out.svg] -- python app.py [args ...]" % prog)
    _check_target(command)
    python = checks.python_of(command)
    probe = checks.probe_python(python, os.environ) if python else None
    if probe is not None and "error" not in probe:
        problem = checks.support_error(probe)
        if problem:
            raise Failure(problem)
        if python == shutil.which(command[0]):
            _check_script(command[1:])
        warning = checks.hook_warning(probe)
        if warning:
            say("warning: " + warning)
    mode, why = checks.choose_mode(args.mode, probe)
    perf, version, text = _find_perf()
    if mode.name == "dwarf" and version < checks.PERF_FOR_JITDUMP:
        say("warning: " + checks.old_perf_warning(text))
    env, notes = checks.target_env(mode, os.environ)
    for note in notes:
        say(note)
    say("mode %s (%s): %s" % (mode.name, mode.summary, why))

    session = Session(perf, args.output)
    data = os.path.join(session.work, "perf.data")
    keep_outputs = False  # the target's perf maps and jitdumps
    try:
        options = mode.record_options(args.freq, args.stack_size)
        say("recording: perf record %s -- %s" % (" ".join(options), " ".join(shlex.quote(w) for w in command)))
        caught = []
        proc = subprocess.Popen([perf, "record"] + options + ["-q", "-o", data, "--"] + command, env=env)

        def stop(signum, frame):
            caught.append(signum)
            proc.send_signal(signal.SIGINT)

        with _on_signals(stop):
            returncode = proc.wait()
        if not os.path.exists(data) or os.path.getsize(data) == 0:
            raise Failure("perf could not record (its message is above).\n  "
                          + "\n  ".join(checks.permission_help())
                          + "\n  `%s doctor` checks the whole set-up." % prog)
        if caught:
            say("recording stopped by %s; the target %s" % (signal.Signals(caught[0]).name, _describe(returncode)))
        elif returncode != 0:
            say("the target %s" % _describe(returncode))

        title = " ".join([os.path.basename(command[0])] + command[1:])
        status, keep_outputs = process(session, data, mode, args, title, prog)
        return _status_of(returncode) if status is None else status
    finally:
        if not keep_outputs:
            for pid in session.pids:
                _unlink("/tmp/perf-%d.map" % pid)
            for dump in session.dumps:
                _unlink(dump)
        session.close()


def process(session, data, mode, args, title, prog, note=None):
    """Draws the flame graph of the recording ``data`` and prints the top functions (with
    ``note`` under them); returns (exit status when processing failed else None, whether the
    recording and the outputs it needs were kept)."""
    try:
        with _on_signals(_interrupt):
            say("recorded %.1f MB" % (os.path.getsize(data) / 1e6))
            if mode.name == "unwind":
                samples_from, profile = data, session.unwind(data, args.native)
            else:
                session.scan(data)
                samples_from = session.inject(data)
                profile = session.read(samples_from, args.native)
            session.write(profile, "%s (%s mode)" % (title, mode.name), args.top, note)
    except (KeyboardInterrupt, Failure) as e:
        # The recording is all there: keep it, and what perf needs to read it, for `report`.
        kept = _keep(data, session.stem + ".perf.data")
        say("%s; the recording is kept in %s (and the perf maps or jitdumps it needs); finish with: %s report %s -o %s"
            % ("interrupted" if isinstance(e, KeyboardInterrupt) else e, kept, prog, shlex.quote(kept),
               shlex.quote(session.svg)))
        return (130 if isinstance(e, KeyboardInterrupt) else e.status), True
    if not args.keep:
        return None, False
    kept = [_keep(data, session.stem + ".perf.data")]
    if samples_from != data:
        kept.append(_keep(samples_from, session.stem + ".perf.jit.data"))
        session.jitted = []
    # perf's own DWARF unwinder stops at the trampolines (no CFI): ours reads it again.
    again = ("%s report %s" % (prog, kept[-1]) if mode.name == "unwind" else "perf report -i " + kept[-1])
    say("kept %s, and the perf maps, jitdumps and jitted-*.so files it needs: %s" % (" and ".join(kept), again))
    return None, True


def _keep(path, dest):
    os.replace(path, dest)
    return dest


def report(args, prog):
    data = os.path.abspath(args.data)
    if not os.path.isfile(data):
        raise Failure("%s: no such file (record one with `%s record -- python app.py`)" % (args.data, prog))
    session = Session(_find_perf()[0], args.output)
    try:
        with _on_signals(_interrupt):
            try:
                session.scan(data)
                if session.dumps and not session.injected:
                    missing = [d for d in session.dumps if not os.path.exists(d)]
                    if missing:
                        say("warning: jitdumps gone, their functions stay unnamed: %s" % ", ".join(missing))
                if not (session.dumps or session.injected) and _has_user_stacks(data):
                    profile = session.unwind(data, args.native)
                else:
                    profile = session.read(session.inject(data), args.native)
                return 0 if session.write(profile, os.path.basename(data), args.top) else 1
            except KeyboardInterrupt:
                say("interrupted")
                return 130
    finally:
        session.close()


def clean(args, prog):
    """Removes (with ``--dry-run``: lists) our perf maps and jitdumps whose process is gone."""
    directory = leftovers.output_dir()
    try:
        found = leftovers.find(directory)
    except OSError as e:
        raise Failure("cannot read %s: %s" % (directory, e.strerror or e))
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


def _has_user_stacks(data):
    try:
        return unwound.has_user_stacks(data)
    except ValueError as e:
        raise Failure(str(e))


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog, description="Python functions in perf profiles: record a program into a flame graph.")
    sub = parser.add_subparsers(dest="action", metavar="{record,report,doctor,clean,attach,detach}")
    sub.required = True

    def outputs(p):
        p.add_argument("-o", "--output", default="flamegraph.svg",
                       help="the flame graph (default: flamegraph.svg); the folded stacks go beside it, "
                            "with .folded for .svg")
        p.add_argument("--native", action="store_true",
                       help="keep every native frame in the stacks (default: Python frames only)")
        p.add_argument("--top", type=int, default=10, metavar="N", help="rows of the top-functions tables")

    rec = sub.add_parser("record", help="run a command under perf record and draw its flame graph",
                         usage="%(prog)s [options] -- python app.py [args ...]")
    outputs(rec)
    rec.add_argument("--mode", choices=("auto", "unwind", "fp", "dwarf"), default="auto",
                     help="unwind: perf map + --call-graph dwarf, unwound by perf-trampoline (any interpreter, "
                          "native libraries included); fp: perf record -g with the perf map, for perf report "
                          "(needs an interpreter built with frame pointers); dwarf: jitdump + perf inject, for "
                          "perf report on any interpreter; auto (default): unwind")
    rec.add_argument("--freq", type=int, default=checks.DEFAULT_FREQ, metavar="HZ",
                     help="samples per second (default: %d)" % checks.DEFAULT_FREQ)
    rec.add_argument("--stack-size", type=_stack_size, default=checks.DEFAULT_STACK_SIZE, metavar="BYTES",
                     help="unwind and dwarf modes: stack bytes copied per sample (default: %d, about 45 Python calls deep; "
                          "at most %d)" % (checks.DEFAULT_STACK_SIZE, checks.MAX_STACK_SIZE))
    rec.add_argument("--keep", action="store_true",
                     help="keep perf.data (as <output>.perf.data), the perf maps, jitdumps and jitted-*.so files")
    rec.add_argument("command", nargs=argparse.REMAINDER, help="the program to profile, after --")
    attach.add_record_arguments(rec)

    rep = sub.add_parser("report", help="draw the flame graph of an existing perf.data")
    outputs(rep)
    rep.add_argument("data", nargs="?", default="perf.data", help="the recording (default: perf.data); "
                     "injected with perf inject --jit when it has jitdumps and is not injected yet, else "
                     "unwound by perf-trampoline when made with --call-graph dwarf")

    doc = sub.add_parser("doctor", help="check perf, permissions and the interpreter, and print the command to use")
    doc.add_argument("--python", default=sys.executable, help="the interpreter to check (default: this one)")
    doc.add_argument("--pid", type=int, help="also check whether attach / record -p can work on this process")

    cln = sub.add_parser("clean", help="remove our perf maps and jitdumps of processes that are gone "
                         "(in $PERF_TRAMPOLINE_DIR, else /tmp)")
    cln.add_argument("--dry-run", action="store_true", help="list them, remove nothing")

    for verb, text in (("attach", "turn support on in a running Python process"),
                       ("detach", "turn support off in a running Python process (removes our hook)")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("pid", type=int, help="the process")
        attach.add_arguments(p, backend=verb == "attach")
    return parser


def _stack_size(text):
    n = int(text)
    if not 1024 <= n <= checks.MAX_STACK_SIZE:
        raise argparse.ArgumentTypeError("between 1024 and %d" % checks.MAX_STACK_SIZE)
    return n - n % 8  # perf wants a multiple of 8


def _prog():
    if os.path.basename(sys.argv[0]) == "perf-trampoline":
        return "perf-trampoline"
    return "%s -m perf_trampoline" % os.path.basename(sys.executable)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = _prog()
    # Everything after "--" is the command, options and all.
    command = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.action == "record":
        args.command = args.command + command
    elif command:
        parser.error("only record takes a command (after --)")
    try:
        if args.action == "doctor":
            status = checks.doctor(args.python, prog)
            return max(status, attach.doctor(args.pid)) if args.pid is not None else status
        if args.action == "clean":
            return clean(args, prog)
        if args.action in ("attach", "detach"):
            return (attach.main_attach if args.action == "attach" else attach.main_detach)(args, say)
        if args.action == "record" and args.pid is not None:
            from . import live  # it builds on this module's Session

            return live.record_pid(args, prog)
        return (record if args.action == "record" else report)(args, prog)
    except (Failure, attach.Refusal) as e:
        say(str(e))
        return getattr(e, "status", 2)
    except KeyboardInterrupt:
        say("interrupted")
        return 130
