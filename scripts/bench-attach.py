#!/usr/bin/env python3
"""What an attach leaves behind, per interpreter: a call-heavy loop's CPU time per iteration
after ``perf-trampoline detach`` over before ``attach`` (the same process, paired round by
round), and with ``PERF_TRAMPOLINE=standby`` armed but never fired over no preparation at all
(fresh processes every round, run in turns: the others are stopped with SIGSTOP while one
runs; a third, also unprepared, shows how far two identical processes differ).

The loop reports its own thread CPU time per block of iterations, so neither the other
processes on this machine nor the attach itself count. 3.14+ targets are attached through
sys.remote_exec (no preparation); older ones through standby. Run it with the test venv's
python: target/venvs/3.11/bin/python scripts/bench-attach.py [--rounds N] [--interpreters ...]
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

from bench_process.runner import MANIFEST, Interpreter, clean_env

# Prints, per block of calls, its thread CPU nanoseconds per iteration (one Python call of
# f per iteration), forever; its pid first.
LOOP = r"""
import os, random, sys, time
# Where the loop's objects land moves its speed by up to 15% on 3.11 (any import before it
# does that); a random layout per process turns that into noise that rounds average out.
_layout = [bytes(random.randrange(1, 4096)) for _ in range(random.randrange(1, 256))]
def f(x):
    return x + 1
def block(n):
    s = 0
    for _ in range(n):
        s = f(s)
    return s
N = 200_000
print(os.getpid(), flush=True)
while True:
    t = time.thread_time_ns()
    block(N)
    print((time.thread_time_ns() - t) / N, flush=True)
"""


class Loop:
    """LOOP running in ``interp`` (its venv: our package, for standby), its blocks timestamped."""

    def __init__(self, interp, env=None):
        # The stack moves with the environment's size: a random one per process, as the heap's.
        env = dict(env or {}, LAYOUT="x" * random.randrange(4096))
        self.proc = subprocess.Popen(interp.wrap + [interp.python, "-c", LOOP], stdout=subprocess.PIPE,
                                     env=clean_env(env), text=True)
        self.pid = int(self.proc.stdout.readline())
        self.blocks = []  # (monotonic time, ns per iteration)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.blocks.append((time.monotonic(), float(line)))

    def window(self, seconds):
        """The median ns per iteration of the blocks that end in the next ``seconds``."""
        start = time.monotonic()
        time.sleep(seconds)
        end = time.monotonic()
        values = [v for t, v in list(self.blocks) if start < t <= end]
        if len(values) < 3:
            raise RuntimeError("too few blocks in %g s" % seconds)
        return statistics.median(values)

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def cli(interp, *args):
    out = subprocess.run(interp.wrap + [interp.python, "-m", "perf_trampoline"] + list(args),
                         capture_output=True, text=True, env=clean_env({}))
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())


def detach_ratios(interp, rounds, seconds):
    """Per round: (after detach / before attach, attached / before attach)."""
    loop = Loop(interp, None if interp.version >= (3, 14) else {"PERF_TRAMPOLINE": "standby"})
    try:
        time.sleep(1)  # past start-up and specialization
        ratios = []
        for _ in range(rounds):
            before = loop.window(seconds)
            cli(interp, "attach", str(loop.pid))
            on = loop.window(seconds)
            cli(interp, "detach", str(loop.pid))
            time.sleep(0.2)  # blocks that straddle the detach
            after = loop.window(seconds)
            ratios.append((after / before, on / before))
        return ratios
    finally:
        loop.stop()
        for path in ("/tmp/perf-%d.map" % loop.pid,):
            if os.path.exists(path):
                os.unlink(path)


def standby_ratios(interp, rounds, seconds):
    """Per round, with fresh processes (fresh layouts): (standby armed / no preparation, a
    second unprepared process / the first: how far two identical processes differ), the
    loops running in turns, order rotated."""
    ratios = []
    for r in range(rounds):
        armed, plain, control = Loop(interp, {"PERF_TRAMPOLINE": "standby"}), Loop(interp), Loop(interp)
        loops = [armed, plain, control]
        try:
            for loop in loops:
                os.kill(loop.pid, signal.SIGSTOP)
            medians = {}
            for run in loops[r % 3:] + loops[:r % 3]:
                os.kill(run.pid, signal.SIGCONT)
                time.sleep(0.5)  # past start-up and specialization
                medians[run] = run.window(seconds)
                os.kill(run.pid, signal.SIGSTOP)
            ratios.append((medians[armed] / medians[plain], medians[control] / medians[plain]))
        finally:
            for loop in loops:
                os.kill(loop.pid, signal.SIGCONT)
                loop.stop()
    return ratios


def summary(values):
    return "%.3f (min %.3f, max %.3f)" % (statistics.median(values), min(values), max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=1.5, help="per measuring window")
    parser.add_argument("--interpreters", default="host-3.11,sid-3.13,sid-3.14,sid-3.15")
    args = parser.parse_args()
    wanted = args.interpreters.split(",")
    interps = [Interpreter(e) for e in json.loads(MANIFEST.read_text()) if e["name"] in wanted]
    print("%-10s  %-30s  %-30s  %-30s  %s" % ("", "after detach / before attach", "standby armed / unprepared",
                                              "unprepared / unprepared", "attached / before (the hook's cost)"))
    for interp in interps:
        detach = detach_ratios(interp, args.rounds, args.seconds)
        standby = standby_ratios(interp, args.rounds, args.seconds)
        print("%-10s  %-30s  %-30s  %-30s  %s" % (
            interp.name, summary([a for a, _ in detach]), summary([a for a, _ in standby]),
            summary([c for _, c in standby]), summary([o for _, o in detach])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
