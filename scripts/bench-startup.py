#!/usr/bin/env python3
"""Start-up with perf support: an empty script started every way side by side (plain, CPython's
``-X perf`` where it exists, ours through the ``.pth`` switch and through the runner, standby
armed, and a plain ``python`` with perf_trampoline installed but no switch set), paired and
interleaved, per interpreter.

Each interpreter gets three venvs made alike under target/bench-startup/venvs: one with our
wheel installed (target/wheels, made by scripts/test-interpreters.sh), one without, where
"plain" runs, and one with nothing but a .pth file holding a comment, so that "installed, no
switch" shows what our .pth line costs next to what site charges for any .pth file. Every round runs
each way once, in an order rotated round by round; the table gives the median of each way's
wall time and CPU time (user + system of the child, from wait4: other processes on this machine
do not count) and, per round, its difference to plain's (median and quartiles). Everything runs
under target/, never /tmp: a large /tmp directory slows every import from the script's
directory. Run it with the test venv's python:
target/venvs/3.11/bin/python scripts/bench-startup.py [--rounds N] [--interpreters ...]
"""

import argparse
import datetime
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from bench_process.runner import ROOT, chosen_interpreters, clean_env

WORK = ROOT / "target" / "bench-startup"
WHEELS = ROOT / "target" / "wheels"


class Way:
    """One way of starting the empty script: in which venv, with which arguments and
    environment, from which CPython version on, and which file it must leave in /tmp."""

    def __init__(self, name, venv, args, env=None, since=(3, 0), output=None):
        self.name = name
        self.venv = venv  # "bare", "comment" or "ours"
        self.args = args
        self.env = env or {}
        self.since = since
        self.output = output  # "perf-{pid}.map": proof that support came up (then removed)


WAYS = [
    Way("plain", "bare", ["empty.py"]),
    Way("any .pth file (a comment line)", "comment", ["empty.py"]),
    Way("installed, no switch", "ours", ["empty.py"]),
    Way("-X perf (CPython's)", "bare", ["-X", "perf", "empty.py"], since=(3, 12), output="perf-{pid}.map"),
    Way("PERF_TRAMPOLINE=perf (.pth)", "ours", ["empty.py"], {"PERF_TRAMPOLINE": "perf"}, output="perf-{pid}.map"),
    Way("python -m perf_trampoline", "ours", ["-m", "perf_trampoline", "empty.py"], output="perf-{pid}.map"),
    # What any `python -m` pays before a runner's code runs (runpy and its imports).
    Way("python -m (an empty module)", "bare", ["-m", "empty"]),
    Way("PERF_TRAMPOLINE=standby", "ours", ["empty.py"], {"PERF_TRAMPOLINE": "standby"}),
]


def the_wheel():
    wheels = sorted(WHEELS.glob("*.whl"))
    if len(wheels) != 1:
        sys.exit("bench-startup: expected one wheel in %s; run scripts/test-interpreters.sh first" % WHEELS)
    return wheels[0]


def run_quietly(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit("bench-startup: %s failed:\n%s" % (" ".join(cmd), (out.stdout + out.stderr)[-2000:]))
    return out.stdout


def venvs(interp, wheel):
    """{"bare": python, "comment": python, "ours": python}: three venvs made the same way, ours
    with the wheel, "comment" with a .pth file that only holds a comment."""
    base = run_quietly(interp.wrap + [interp.python, "-c", "import sys; print(sys._base_executable)"]).strip()
    pythons = {}
    for kind in ("bare", "comment", "ours"):
        path = WORK / "venvs" / ("%s-%s" % (interp.name, kind))
        python = path / "bin" / "python"
        if not python.exists():
            run_quietly(interp.wrap + [base, "-m", "venv", str(path)])
        if kind == "comment":
            site = run_quietly(interp.wrap + [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
            pathlib.Path(site.strip(), "comment.pth").write_text("# nothing but a comment\n")
        if kind == "ours":
            stamp = path / "installed-wheel"
            want = "%s %d %d" % (wheel, wheel.stat().st_size, wheel.stat().st_mtime_ns)
            if not stamp.exists() or stamp.read_text() != want:
                run_quietly(interp.wrap + [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                           "--force-reinstall", "--no-deps", "--no-index", str(wheel)])
                stamp.write_text(want)
        pythons[kind] = str(python)
    return pythons


class Failed(Exception):
    pass


def start(interp, python, way):
    """Runs the empty script once; returns (wall ns, CPU ns, minor page faults)."""
    root = interp.timed_wrap[1] if interp.timed_wrap[:1] == ["chroot"] else None

    def enter_root():
        # chroot(1) would leave the child in the root's /, where `-m empty` is not found.
        os.chroot(root)
        os.chdir(WORK)

    with tempfile.TemporaryFile() as err:
        t = time.perf_counter_ns()
        p = subprocess.Popen([python] + way.args, cwd=WORK, env=clean_env(way.env), stdout=subprocess.DEVNULL,
                             stderr=err, preexec_fn=enter_root if root else None)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter_ns() - t
        err.seek(0)
        text = err.read().decode(errors="replace")
    output = pathlib.Path("/tmp", way.output.format(pid=p.pid)) if way.output else None
    made = output is not None and output.exists()
    if made:
        output.unlink()
    if os.waitstatus_to_exitcode(status) != 0 or text or (output is not None and not made):
        raise Failed("%s %s: exit %d%s\n%s" % (interp.name, way.name, os.waitstatus_to_exitcode(status),
                                               ", no %s" % output if output and not made else "", text))
    cpu = round((usage.ru_utime + usage.ru_stime) * 1e9)
    return wall, cpu, usage.ru_minflt


def measure(interp, pythons, rounds):
    """{way name: [(wall, cpu, faults) per round]} for the ways this interpreter has."""
    ways = [w for w in WAYS if interp.version >= w.since]
    for way in ways:  # untimed: page cache, bytecode caches of empty.py
        start(interp, pythons[way.venv], way)
    runs = {w.name: [] for w in ways}
    for r in range(rounds):
        for way in ways[r % len(ways):] + ways[:r % len(ways)]:
            runs[way.name].append(start(interp, pythons[way.venv], way))
    return runs


def ms(ns):
    return "%.2f" % (ns / 1e6)


def over(values, base, index):
    """Median and quartiles of the per-round differences to plain, in ms."""
    diffs = sorted(v[index] - b[index] for v, b in zip(values, base))
    q = statistics.quantiles(diffs, n=4) if len(diffs) > 1 else [diffs[0]] * 3
    return "%+.2f (%+.2f – %+.2f)" % (q[1] / 1e6, q[0] / 1e6, q[2] / 1e6)


def table(runs):
    base = runs["plain"]
    lines = ["| how started | wall (median ms) | over plain, wall (ms: median, quartiles) | CPU (median ms) "
             "| over plain, CPU | minor faults over plain |",
             "|---|---|---|---|---|---|"]
    for name, values in runs.items():
        faults = statistics.median(v[2] - b[2] for v, b in zip(values, base))
        lines.append("| %s | %s | %s | %s | %s | %+d |" % (
            name, ms(statistics.median(v[0] for v in values)), "" if values is base else over(values, base, 0),
            ms(statistics.median(v[1] for v in values)), "" if values is base else over(values, base, 1),
            faults))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--interpreters", default="host-3.11,sid-3.13,sid-3.14,sid-3.15")
    args = parser.parse_args()
    wheel = the_wheel()
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)  # the sid interpreters run as root in a chroot; the tree is the same
    (WORK / "empty.py").write_text("")
    print("%s, load average %.1f, %d rounds, wheel %s" % (
        datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), os.getloadavg()[0],
        args.rounds, wheel.name), flush=True)
    for interp in chosen_interpreters(args.interpreters, "bench-startup"):
        pythons = venvs(interp, wheel)
        for attempt in range(3):
            try:
                runs = measure(interp, pythons, args.rounds)
                break
            except Failed as e:
                if attempt == 2:
                    sys.exit("bench-startup: %s" % e)
                print("bench-startup: again after a failed run (%s)" % str(e).splitlines()[0], file=sys.stderr)
        print("\n%s (%s)\n\n%s" % (interp.name, ".".join(map(str, interp.version)), table(runs)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
