#!/usr/bin/env python3
"""Command line of the whole-process benchmark: picks interpreters and workloads, runs them, prints the report."""

import argparse
import json
import sys
import time

from bench_process.report import Report
from bench_process.runner import MANIFEST, Bench, Interpreter
from bench_process.workloads import WORKLOADS

DESCRIPTION = """Child CPU time of Python workloads without perf support, with CPython's -X perf /
-X perf_jit and with perf-trampoline's backends, run side by side and interleaved. Interpreters
come from target/interpreters.json (scripts/test-interpreters.sh writes it). Every number is a
median over rounds of a paired value: in each round every variant of a workload runs back to
back on one interpreter, so the noise of a shared machine hits both sides of a ratio alike."""


def main():
    ap = argparse.ArgumentParser(description=DESCRIPTION)
    ap.add_argument("--rounds", type=int, help="rounds of every variant of every workload (default 12, 3 with --quick)")
    ap.add_argument("--interpreters", help="comma-separated names or versions from target/interpreters.json")
    ap.add_argument("--workloads", help="comma-separated, from: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller per-call workloads")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in every variant's environment, e.g. PYTHON_JIT=1 (CPython's JIT on, 3.14+)")
    args = ap.parse_args()
    if not MANIFEST.exists():
        sys.exit("bench-process: %s is missing: run scripts/test-interpreters.sh first" % MANIFEST)
    interpreters = [Interpreter(e) for e in json.loads(MANIFEST.read_text())]
    if args.interpreters:
        wanted = args.interpreters.split(",")
        interpreters = [i for i in interpreters if i.name in wanted or ".".join(map(str, i.version)) in wanted]
    workloads = WORKLOADS
    if args.workloads:
        wanted = args.workloads.split(",")
        unknown = set(wanted) - {w.name for w in WORKLOADS}
        if unknown:
            sys.exit("bench-process: unknown workloads %s; known: %s"
                     % (", ".join(sorted(unknown)), ", ".join(w.name for w in WORKLOADS)))
        workloads = [w for w in WORKLOADS if w.name in wanted]
    if not interpreters or not workloads:
        sys.exit("bench-process: nothing to run")
    rounds = args.rounds or (3 if args.quick else 12)
    if any("=" not in e for e in args.env):
        sys.exit("bench-process: --env takes NAME=VALUE")
    bench = Bench(args.quick, dict(e.split("=", 1) for e in args.env))
    try:
        bench.run(interpreters, workloads, rounds)
    finally:
        bench.close()
    print("%d rounds, %s, %s; %s" % (rounds, "quick" if args.quick else "full",
                                     time.strftime("%Y-%m-%d"), " ".join(sys.argv[1:]) or "defaults"))
    print()
    print(Report(bench, interpreters, workloads).text())


if __name__ == "__main__":
    main()
