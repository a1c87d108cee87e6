#!/usr/bin/env python3
"""Time to write each output format of one long recording, side by side with the `perf script`
step that precedes it in record's fp and dwarf modes.

Records tests/python/busy_threads.py (four busy threads) for --seconds (default 60) with
`perf-trampoline record --mode fp` on sid's python3.15 (built with frame pointers: perf.data
stays small), keeps it, then in the same root times: `perf script` of it into a file (record's
own fields), our reader of that text into the samples model, and each writer. The unwind mode
builds the same model in its unwinder, and the same writers write it.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs in the target's venv inside the root: our side, timed there.
OURS = r"""
import json, sys, time
from perf_trampoline.stacks import Profile, read_perf_script
from perf_trampoline._native import flamegraph_svg
script, stem = sys.argv[1:3]
t = {}
started = time.perf_counter()
with open(script, encoding="utf-8", errors="replace") as f:
    samples = read_perf_script(f)
t["read perf script's text (model)"] = time.perf_counter() - started
started = time.perf_counter()
profile = Profile()
profile.add_samples(samples)
folded = profile.folded()
with open(stem + ".folded", "w") as f:
    f.write(folded)
t["folded"] = time.perf_counter() - started
started = time.perf_counter()
with open(stem + ".svg", "w") as f:
    f.write(flamegraph_svg(folded, "bench"))
t["svg"] = time.perf_counter() - started
for name, ext in (("firefox", ".json.gz"), ("speedscope", ".speedscope.json"), ("pprof", ".pb.gz")):
    started = time.perf_counter()
    samples.write(name, stem + ext, "bench")
    t[name] = time.perf_counter() - started
print(json.dumps({"samples": len(samples), "threads": len({l.split(";", 1)[0] for l in folded.splitlines()}),
                  "times": t}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--interpreter", default="sid-3.15")
    args = parser.parse_args()
    entry = next(e for e in json.loads((ROOT / "target" / "interpreters.json").read_text())
                 if e["name"] == args.interpreter)
    wrap, python = entry["wrap"], entry["python"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PERF_TRAMPOLINE", "PYTHONPERF"))}
    with tempfile.TemporaryDirectory(prefix="bench-formats-") as work:
        os.chmod(work, 0o755)
        stem = os.path.join(work, "rec")
        subprocess.run(wrap + [python, "-m", "perf_trampoline", "record", "--mode", "fp", "--keep", "--format", "folded",
                               "-o", stem, "--", python, str(ROOT / "tests" / "python" / "busy_threads.py"),
                               str(args.seconds)], check=True, env=env, stdout=subprocess.DEVNULL)
        data = stem + ".perf.data"
        script = stem + ".script"
        started = time.perf_counter()
        with open(script, "wb") as out:
            subprocess.run(wrap + ["perf", "script", "-i", data, "-F", "comm,pid,tid,time,period,ip,sym,dso", "--ns",
                                   "--max-stack", "1024", "--no-inline"], check=True, stdout=out,
                           stderr=subprocess.DEVNULL)
        perf_script = time.perf_counter() - started
        ours = json.loads(subprocess.run(wrap + [python, "-c", OURS, script, stem], check=True, capture_output=True,
                                         env=env).stdout)
        print("%s, %g s of %s: %d samples, %d threads, perf.data %.0f MB, perf script's text %.0f MB"
              % (args.interpreter, args.seconds, "busy_threads.py", ours["samples"], ours["threads"],
                 os.path.getsize(data) / 1e6, os.path.getsize(script) / 1e6))
        print("%-34s %8.2f s" % ("perf script (the step before)", perf_script))
        for step, seconds in ours["times"].items():
            ext = {"firefox": ".json.gz", "speedscope": ".speedscope.json", "pprof": ".pb.gz", "svg": ".svg",
                   "folded": ".folded"}.get(step)
            size = " (%.1f MB)" % (os.path.getsize(stem + ext) / 1e6) if ext else ""
            print("%-34s %8.2f s  %5.2fx perf script's time%s" % (step, seconds, seconds / perf_script, size))


if __name__ == "__main__":
    sys.exit(main())
