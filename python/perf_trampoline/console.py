"""Talking to the person at the command: errors they can act on, stage and progress lines on
stderr, and the signals that stop a recording or abort its processing."""

import contextlib
import signal
import sys
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
