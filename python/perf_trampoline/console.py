"""Talking to the person at the command: errors they can act on, stage and progress lines on
stderr, and the signals that stop a recording or abort its processing."""

import contextlib
import signal
import sys
import threading
import time

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


@contextlib.contextmanager
def on_signals(handler):
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


def interrupt(signum, frame):
    """A STOP_SIGNALS handler that aborts the work in hand as Ctrl-C would."""
    raise KeyboardInterrupt


def size(n):
    """Bytes for people: 12.3 MB."""
    return "%.1f MB" % (n / 1e6) if n >= 100e3 else "%.1f KB" % (n / 1e3)


class Progress:
    """One phase of the work. On a terminal: a start line, then ``tick(text)`` as often as
    convenient (from any thread; the line is rewritten in place at most five times a second);
    elsewhere (logs, pipes) only the phase's end, so a log gets one line per phase.
    ``done(text)`` writes that line with the phase's time."""

    def __init__(self, what):
        self.what = what
        self.tty = sys.stderr.isatty()
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
                sys.stderr.write("\r\033[K  %s" % text)
                sys.stderr.flush()

    def done(self, text="done", seconds=None):
        """The phase's line: ``text`` and its time (``seconds``, else the time since it began)."""
        with self.lock:
            if self.tty:
                sys.stderr.write("\r\033[K")
            say("%s: %s (%.1f s)" % (self.what, text, self.elapsed() if seconds is None else seconds))
