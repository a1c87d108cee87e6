"""One recording turned into a profile: its processes and jitdumps found, perf inject run when
it needs it, its samples read (through perf script or our own unwinder), and the chosen
formats (formats.py) and the top table written, all with a scratch directory beside the output."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from . import _native, formats, host_copies, injection, namespaces, unwound
from .console import Failure, Progress, say, size
from .machine import run_perf
from .stacks import FIELDS, Profile, read_perf_script

# "... PERF_RECORD_MMAP2 123/123: [...]: r-xp /tmp/jit-123.dump" and the like.
_DUMP = re.compile(r"PERF_RECORD_MMAP2? .*\]: \S+ (?P<path>.*/jit-(?P<pid>\d+)\.dump)$")
_EXECUTABLE = re.compile(r"PERF_RECORD_MMAP2? (?P<pid>\d+)/\d+: .*\]: [r-][w-]x\S* (?P<path>/.*)$")
_JITTED = re.compile(r"PERF_RECORD_MMAP2? .*/jitted-\d+-\d+\.so$")
_PIDS = re.compile(r"PERF_RECORD_COMM.*:(?P<comm_pid>\d+)/\d+$|PERF_RECORD_FORK\((?P<fork_pid>\d+):|^\s*(?P<pid>\d+)\s*$")


class Session:
    """Turns one recording into the files of the chosen formats (``-o output``, ``--format``
    ``chosen``), with a scratch directory beside them; ``close()`` removes it."""

    def __init__(self, perf, output, chosen=None):
        self.perf = perf
        self.output = os.path.abspath(output)
        if not os.path.isdir(os.path.dirname(self.output)):
            raise Failure("%s: its directory does not exist" % output)
        self.stem = formats.stem(self.output)
        self.chosen = chosen or []
        self.work = tempfile.mkdtemp(prefix=".perf-trampoline-", dir=os.path.dirname(self.output))
        self.pids = set()   # every process of the recording
        self.dumps = set()  # their jitdumps (the jit markers in the recording)
        self.executables = set()  # (pid, path) of each file mapped executable
        # {(pid, path): where to read it}: the executables of processes in containers.
        self.moved = {}
        self.injected = False
        self.jitted = None  # the jitted code of our injection
        self.keep_jitted = False

    def scan(self, data):
        """Finds the recording's processes and jitdumps, and whether it is injected already."""
        with tempfile.TemporaryFile() as out:
            run_perf(self.perf, ["script", "-i", data, "-F", "pid", "--show-task-events", "--show-mmap-events"],
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
                m = _EXECUTABLE.search(line)
                if m:
                    self.executables.add((int(m.group("pid")), m.group("path")))
                m = _PIDS.search(line)
                if m:
                    self.pids.add(int(next(g for g in m.groups() if g)))

    def inject(self, data, keep_jitted=False):
        """Injects the recording when it has jitdumps and is not injected yet; returns the
        file to read samples from. Its jitted code goes to ``self.jitted``, removed at
        ``close()`` unless ``keep_jitted``."""
        if not self.dumps or self.injected:
            return data
        self.jitted = injection.new_jitted_dir(os.path.basename(self.stem))
        self.keep_jitted = keep_jitted
        out = os.path.join(self.work, "perf.jit.data")
        injection.inject(self.perf, data, out, self.jitted,
                         {**self.moved, **host_copies.through_roots(self.executables)})
        return out

    def read(self, data, native):
        """Folds the samples of ``data`` (perf script) into a Profile."""
        samples = _native.Samples()
        progress = Progress("perf script")
        with tempfile.TemporaryFile() as err:
            # --no-inline: without addr2line (sid's root has none) perf 7.2 sometimes stops
            # unwinding at the first trampoline while looking for inlined frames.
            proc = subprocess.Popen(
                [self.perf, "script", "-i", data, "-F", FIELDS, "--ns", "--max-stack", "1024", "--no-inline"],
                stdout=subprocess.PIPE, stderr=err, encoding="utf-8", errors="replace",
                preexec_fn=namespaces.keep_perf_in_our_mounts)
            try:
                read_perf_script(self._ticking(proc.stdout, progress, samples), samples)
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
        profile = Profile(native)
        profile.add_samples(samples)
        progress.done("%d samples" % profile.samples)
        return profile

    def unwind(self, data, native):
        """Folds the samples of ``data`` (perf map, ``--call-graph dwarf``) through our unwinder."""
        progress = Progress("unwinding")
        try:
            profile, result = unwound.read(data, native, lambda n, nbytes: progress.tick("%d samples, %s" % (n, size(nbytes))),
                                           self.moved)
        except ValueError as e:
            raise Failure(str(e)) from None
        self.pids.update(result["pids"])
        for note in result["notes"]:
            say("note: " + note)
        progress.done("%d samples" % profile.samples)
        return profile

    @staticmethod
    def _ticking(lines, progress, samples):
        for n, line in enumerate(lines):
            if n % 4096 == 0:
                progress.tick("%d samples" % len(samples))
            yield line

    def write(self, profile, title, top, note=None, interpreter=None):
        """Writes the chosen formats, prints the top functions (and ``note``, which the flame
        graph's title carries too); False when there was nothing to draw. ``interpreter``
        goes into the formats that keep it."""
        if not profile.samples:
            say("no samples: nothing to draw")
            return False
        from ._native import flamegraph_svg

        folded = profile.folded()
        # Resolved here, not when the session starts: inject's session writes a perf.data.
        outputs = formats.outputs(self.output, self.chosen)
        for name, path in outputs:
            try:
                if name == "svg":
                    write_atomically(path, flamegraph_svg(folded, title + (" - " + note if note else "")))
                elif name == "folded":
                    write_atomically(path, folded)
                else:
                    profile.model.write(name, path, title, interpreter)
            except OSError as e:
                raise Failure("%s: %s" % (path, e.strerror or e)) from None
        say("wrote " + ", ".join(formats.describe(name, path) for name, path in outputs))
        if not profile.in_python:
            say("warning: no sample is in a Python function: was perf-trampoline on in the target "
                "(PERF_TRAMPOLINE=perf or perf_jit), and are its /tmp/perf-<pid>.map or jit-<pid>.dump files still there?")
        sys.stdout.write(profile.table(top))
        if note:
            sys.stdout.write("note: %s\n" % note)
        sys.stdout.flush()
        return True

    def remove_outputs(self):
        """Removes the perf maps and jitdumps of the recording's processes."""
        for pid in self.pids:
            unlink(_native.output_path("perf map", pid, _native.PERF_MAP_DIR))
        for dump in self.dumps:
            unlink(dump)

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)
        if self.jitted and not self.keep_jitted:
            shutil.rmtree(self.jitted, ignore_errors=True)


def write_atomically(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def unlink(path):
    """Removes ``path`` if it is there."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
