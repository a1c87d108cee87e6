"""Progress on stderr for the long phases of ``record`` and ``report``: a line rewritten in
place on a terminal, and otherwise (logs, pipes) one line when a phase starts and one when it
ends, so a log is not filled with counters."""

import sys
import threading
import time


def say(msg):
    sys.stderr.write("perf-trampoline: %s\n" % msg)
    sys.stderr.flush()


def size(n):
    """Bytes for people: 12.3 MB."""
    return "%.1f MB" % (n / 1e6) if n >= 100e3 else "%.1f KB" % (n / 1e3)


class Progress:
    """One phase: ``tick(text)`` as often as convenient (from any thread; it writes at most
    five times a second, and only on a terminal), ``done(text)`` once at the end."""

    def __init__(self, what, stream=None):
        self.what = what
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.lock = threading.Lock()
        if self.tty:
            say(what + " ...")

    def elapsed(self):
        return time.monotonic() - self.start

    def tick(self, text):
        if not self.tty:
            return
        with self.lock:
            now = time.monotonic()
            if now - self.last >= 0.2:
                self.last = now
                self.stream.write("\r\033[K  %s" % text)
                self.stream.flush()

    def done(self, text="done", seconds=None):
        """The phase's line: ``text`` and its time (``seconds``, else the time since it began)."""
        with self.lock:
            if self.tty:
                self.stream.write("\r\033[K")
            say("%s: %s (%.1f s)" % (self.what, text, self.elapsed() if seconds is None else seconds))
