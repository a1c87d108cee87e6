"""``record``'s default mode without a perf.data on disk: ``perf record -o -`` writes perf's
pipe format into a pipe, and the extension's unwinder (src/perfdata/stream.rs) unwinds each
sample as it arrives, keeping only the folded stacks.

Why streaming, measured (benches/README.md, "Long recordings"): a copied 32 KiB stack is
~33 KB per sample, so a minute of 4 busy threads at 999 Hz is ~8 GB of perf.data; ``perf
record -z`` shrinks it 30 to 160 times but it still grows with the run, and reading it needs a
zstd decoder in the extension. Read as it is made, the recording needs no disk at all and the
memory of its distinct stacks, whatever its length. ``--keep`` copies the stream to a file as
it is read (perf report reads perf's pipe format from a file too).
"""

import os
import signal
import subprocess
import sys
import threading
import time

from . import unwound
from .console import Progress, size


def restore_stdout(fd):
    """A prefix for the command that gives it ``fd`` as its stdout: perf gives the command its
    stderr as stdout when its own stdout is the recording's pipe. The shell costs the profile
    a millisecond of start-up (the shell names descriptors 0 to 9 only, Python the rest)."""
    if fd <= 9:
        return ["/bin/sh", "-c", 'exec 1>&%d %d>&-; exec "$@"' % (fd, fd), "sh"]
    # -I -S: no site, so no perf-trampoline in the wrapper.
    code = "import os, sys; os.dup2(%d, 1); os.close(%d); os.execvp(sys.argv[1], sys.argv[1:])" % (fd, fd)
    return [sys.executable, "-I", "-S", "-c", code]


class Recording:
    """One ``perf record -o -`` of a command, unwound while it runs. ``run()`` returns the
    command's exit status; then ``profile``, ``result`` (the unwinder's pids, notes,
    samples; None when perf's output could not be read: perf could not record, and
    ``error`` says what the unwinder found), ``stopped_by (the signal that stopped it early,
    or "duration")."""

    def __init__(self, perf, options, command, env, native, keep_to=None, duration=None):
        self.perf_argv = [perf, "record"] + options + ["-q", "-o", "-", "--"]
        self.command = command
        self.env = env
        self.native = native
        self.keep_to = keep_to
        self.duration = duration
        self.profile = self.result = self.error = None
        self.stopped_by = None
        self.cancelled = False
        self.progress = None
        self.samples = self.bytes = 0
        self.processing = 0.0  # seconds from perf's end to the profile

    def run(self, on_signals):
        """Records until the command ends, the duration is up or a signal in STOP_SIGNALS
        arrives (``on_signals(handler)`` installs the handler for the recording)."""
        copy_fd = None
        if self.keep_to:
            # Ours alone, never through a link: the copy may be handed to perf report later.
            copy_fd = os.open(self.keep_to, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o600)
        stdout = None
        try:
            try:
                stdout = os.dup(1)
            except OSError:  # no stdout to hand on: the command gets stderr, as perf does
                wrapper = []
            else:
                wrapper = restore_stdout(stdout)
            proc = subprocess.Popen(self.perf_argv + wrapper + self.command, env=self.env, stdout=subprocess.PIPE,
                                    pass_fds=() if stdout is None else (stdout,))
            self.progress = Progress("recording")
            worker = threading.Thread(target=self._unwind, args=(proc.stdout.fileno(), copy_fd), daemon=True)
            worker.start()

            def stop(signum, frame):
                self.stopped_by = self.stopped_by or signal.Signals(signum).name
                proc.send_signal(signal.SIGINT)

            with on_signals(stop):
                returncode = self._wait(proc)
            recorded = self.progress.elapsed()
            finishing = self._finish(worker)
            self.progress.done("%d samples, %s of perf data unwound as it came%s"
                               % (self.samples, size(self.bytes), ", copied to " + self.keep_to if self.keep_to else ""),
                               recorded)
            finishing.done("%d samples in all" % self.samples, self.processing)
            proc.stdout.close()
            return returncode
        finally:
            for fd in (copy_fd, stdout):
                if fd is not None:
                    os.close(fd)

    def _wait(self, proc):
        """perf's exit status (the command's, as perf passes it on); at the duration's end perf
        is stopped as by Ctrl-C to us, and stops the command (SIGTERM)."""
        deadline = None if self.duration is None else time.monotonic() + self.duration
        while True:
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
            self.progress.tick("%.0f s, %d samples, %s" % (self.progress.elapsed(), self.samples, size(self.bytes)))
            if deadline is not None and time.monotonic() >= deadline and self.stopped_by is None:
                self.stopped_by = "duration"
                proc.send_signal(signal.SIGINT)

    def _finish(self, worker):
        """Waits for the unwinder to read the rest (what perf wrote before it ended)."""
        progress = Progress("processing")
        try:
            while worker.is_alive():
                worker.join(0.2)
                progress.tick("%d samples" % self.samples)
        except BaseException:
            self.cancelled = True
            raise
        # A stream the unwinder cannot read (ValueError) is for the caller to explain; it
        # finds ``result`` None. Anything else is ours to pass on.
        if self.error is not None and not isinstance(self.error, ValueError):
            raise self.error
        self.processing = progress.elapsed()
        return progress

    def _tick(self, samples, nbytes):
        self.samples, self.bytes = samples, nbytes
        if self.cancelled:
            raise KeyboardInterrupt

    def _unwind(self, fd, copy_fd):
        from ._native import unwind_perf_stream

        try:
            result = unwind_perf_stream(fd, copy_fd, self._tick)
            self.profile, self.result = unwound.profile_of(result, self.native), result
        except BaseException as e:  # handed to the main thread
            self.error = e
            # perf must not block on a full pipe: read on to its end.
            while os.read(fd, 1 << 16):
                pass
