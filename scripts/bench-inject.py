#!/usr/bin/env python3
"""Injection of one jitdump recording, side by side: plain `perf inject --jit` against
`perf-trampoline inject` (only the functions the samples reach), wall time and peak memory.

Each program (bench_process's `many`: N distinct functions run once each, then a loop) is
recorded once (PERF_TRAMPOLINE=perf_jit, `-k 1`, `--call-graph dwarf`); both sides inject the
very same perf.data. Peak memory is the largest resident size of any process of the command.
Run it with the test venv's python: target/venvs/3.11/bin/python scripts/bench-inject.py
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

from bench_process.runner import MANIFEST, Interpreter, clean_env
from bench_process.tools import remove_outputs, run
from bench_process.workloads import SCRIPTS

# Runs a command and reports its wall time and the peak resident size of its processes.
MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
status = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
seconds = time.perf_counter() - started
if status.returncode:
    sys.exit(status.stderr.decode(errors="replace")[-1500:])
print(json.dumps({"seconds": seconds, "mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def measured(cmd):
    return json.loads(run([sys.executable, "-c", MEASURE] + cmd))


def measure(interp, work, functions, freq, stack_size):
    py = interp.wrap + [interp.python]
    perf = interp.wrap + ["perf"]
    data = str(work / "many.data")
    run(perf + ["record", "-q", "-F", str(freq), "-k", "1", "--call-graph", "dwarf,%d" % stack_size, "-o", data,
                      "--", "env", "PERF_TRAMPOLINE=perf_jit", interp.python, str(work / "many.py"), "run",
                      str(functions)], cwd=work, env=clean_env({}))
    sample_pids = run(perf + ["script", "-i", data, "-F", "pid"]).split()
    try:
        plain = measured(perf + ["--buildid-dir", str(work / "buildid"), "inject", "--jit", "-i", data,
                                 "-o", str(work / "plain.data")])
        jitted = work / "ours.jitted"
        ours = measured(py + ["-m", "perf_trampoline", "inject", "-i", data, "-o", str(work / "ours.data"),
                              "--jitted-dir", str(jitted)])
    finally:
        remove_outputs({int(p) for p in sample_pids})
    return {"interpreter": interp.name, "perf": run(perf + ["--version"]).split()[2], "functions": functions,
            "MB": os.path.getsize(data) / 1e6, "samples": len(sample_pids), "plain": plain, "ours": ours}


HEADER = ("| interpreter | perf | functions | perf.data MB | samples | perf inject s | its peak MB "
          "| ours s | our peak MB | time ours / perf's |\n|---|---|---|---|---|---|---|---|---|---|")


def row(r):
    return "| %s | %s | %d | %.0f | %d | %.1f | %.0f | %.2f | %.0f | 1/%.0f |" % (
        r["interpreter"], r["perf"], r["functions"], r["MB"], r["samples"], r["plain"]["seconds"], r["plain"]["mb"],
        r["ours"]["seconds"], r["ours"]["mb"], r["plain"]["seconds"] / r["ours"]["seconds"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interpreters", default="host-3.11,sid-3.15", help="names from target/interpreters.json")
    ap.add_argument("--functions", default="10000,100000", help="sizes of the `many` workload, comma-separated")
    ap.add_argument("--freq", type=int, default=999)
    ap.add_argument("--stack-size", type=int, default=32768)
    args = ap.parse_args()
    if not MANIFEST.exists():
        sys.exit("bench-inject: %s is missing: run scripts/test-interpreters.sh first" % MANIFEST)
    wanted = args.interpreters.split(",")
    interpreters = [Interpreter(e) for e in json.loads(MANIFEST.read_text()) if e["name"] in wanted]
    # Rows are printed as they come: plain perf inject of 100,000 functions takes many minutes.
    print("%s; -F %d, --call-graph dwarf,%d; wall seconds, one run each; %s"
          % (time.strftime("%Y-%m-%d"), args.freq, args.stack_size, " ".join(sys.argv[1:]) or "defaults"))
    print(HEADER, flush=True)
    for interp in interpreters:
        for functions in map(int, args.functions.split(",")):
            work = pathlib.Path(tempfile.mkdtemp(prefix="jitted-bench-", dir="/tmp"))
            work.chmod(0o755)
            try:
                (work / "many.py").write_text(SCRIPTS["many.py"])
                run(interp.wrap + [interp.python, str(work / "many.py"), "prepare", str(functions)])
                print(row(measure(interp, work, functions, args.freq, args.stack_size)), flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
