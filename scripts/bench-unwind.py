#!/usr/bin/env python3
"""Processing time of one `--call-graph dwarf` recording, side by side: perf-trampoline's own
unwinder (record's default mode) against `perf inject --jit` + `perf script` (the dwarf mode).

Each program is recorded once with both outputs on (PERF_TRAMPOLINE=perf,perf_jit, `-k 1`), so
both sides read the very same perf.data: ours with the perf map, perf's with the jitdump.
Workloads: `many` (100,000 distinct functions, bench_process's generated module) and `seed`
(examples/seed_example.py: 4 functions, many samples). Times are wall seconds of one run each;
`python%` is the share of samples with a Python frame as each side folds them.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from bench_process.runner import MANIFEST, Interpreter, clean_env
from bench_process.tools import remove_outputs, run, timed
from bench_process.workloads import SCRIPTS

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs in the target interpreter (its wheel, its root's files): our side, timed inside.
OURS = r"""
import json, sys, time
from perf_trampoline import unwound
started = time.perf_counter()
profile, result = unwound.read(sys.argv[1], False, lambda n: None)
print(json.dumps({"seconds": time.perf_counter() - started, "samples": profile.samples,
                  "in_python": profile.in_python, "pids": sorted(result["pids"])}))
"""

# Folds perf script's output the way record's dwarf mode does (untimed).
FOLD = r"""
import json, sys
from perf_trampoline.stacks import Profile
profile = Profile()
with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
    profile.add_perf_script(f)
print(json.dumps({"samples": profile.samples, "in_python": profile.in_python}))
"""


def measure(interp, work, name, program, freq, stack_size):
    py = interp.timed_wrap + [interp.python]
    perf = interp.timed_wrap + ["perf"]
    data = str(work / ("%s.data" % name))
    run(perf + ["record", "-q", "-F", str(freq), "-k", "1", "--call-graph", "dwarf,%d" % stack_size, "-o", data,
                "--", "env", "PERF_TRAMPOLINE=perf,perf_jit"] + py[len(interp.timed_wrap):] + program,
        cwd=work, env=clean_env({}))
    ours = json.loads(run(py + ["-c", OURS, data]))
    jit = data.replace(".data", ".jit.data")
    script = work / ("%s.script" % name)
    inject = timed(perf + ["--buildid-dir", str(work / "buildid"), "inject", "--jit", "-i", data, "-o", jit])
    with open(script, "wb") as out:
        started = time.perf_counter()
        subprocess.run(perf + ["script", "-i", jit, "-F", "comm,pid,tid,ip,sym,dso", "--max-stack", "1024",
                               "--no-inline"], stdout=out, stderr=subprocess.DEVNULL, check=True)
        perf_script = time.perf_counter() - started
    theirs = json.loads(run(py + ["-c", FOLD, str(script)]))
    remove_outputs(ours["pids"])
    return {"interpreter": interp.name, "workload": name, "MB": os.path.getsize(data) / 1e6,
            "samples": ours["samples"], "ours": ours["seconds"], "inject": inject, "script": perf_script,
            "python_ours": ours["in_python"] / max(ours["samples"], 1),
            "python_perf": theirs["in_python"] / max(theirs["samples"], 1), "perf_samples": theirs["samples"]}


HEADER = ("| interpreter | workload | perf.data MB | samples | ours s | perf inject s | perf script s "
          "| inject+script / ours | Python frames ours | Python frames perf |\n|---|---|---|---|---|---|---|---|---|---|")


def row(r):
    return "| %s | %s | %.0f | %d | %.2f | %.1f | %.1f | %.0fx | %.1f%% | %.1f%% |" % (
        r["interpreter"], r["workload"], r["MB"], r["samples"], r["ours"], r["inject"], r["script"],
        (r["inject"] + r["script"]) / r["ours"], 100 * r["python_ours"], 100 * r["python_perf"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interpreters", default="host-3.11,sid-3.15", help="names from target/interpreters.json")
    ap.add_argument("--workloads", default="many,seed", help="many, seed or both")
    ap.add_argument("--functions", type=int, default=100000, help="functions of the `many` workload")
    ap.add_argument("--freq", type=int, default=999)
    ap.add_argument("--stack-size", type=int, default=32768)
    args = ap.parse_args()
    if not MANIFEST.exists():
        sys.exit("bench-unwind: %s is missing: run scripts/test-interpreters.sh first" % MANIFEST)
    wanted = args.interpreters.split(",")
    interpreters = [Interpreter(e) for e in json.loads(MANIFEST.read_text()) if e["name"] in wanted]
    workloads = args.workloads.split(",")
    # Rows are printed as they come: perf inject of 100,000 functions takes most of an hour.
    print("%s; -F %d, --call-graph dwarf,%d; wall seconds, one run each; %s"
          % (time.strftime("%Y-%m-%d"), args.freq, args.stack_size, " ".join(sys.argv[1:]) or "defaults"))
    print(HEADER, flush=True)
    for interp in interpreters:
        work = pathlib.Path(tempfile.mkdtemp(prefix="bench-unwind-", dir="/tmp"))
        work.chmod(0o755)
        try:
            if "many" in workloads:
                (work / "many.py").write_text(SCRIPTS["many.py"])
                run(interp.wrap + [interp.python, str(work / "many.py"), "prepare", str(args.functions)])
                print(row(measure(interp, work, "many", [str(work / "many.py"), "run", str(args.functions)],
                                  args.freq, args.stack_size)), flush=True)
            if "seed" in workloads:
                shutil.copy(ROOT / "examples" / "seed_example.py", work / "seed.py")
                print(row(measure(interp, work, "seed", [str(work / "seed.py"), "60000000"], args.freq,
                                  args.stack_size)), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
