#!/usr/bin/env python3
"""Fidelity against size per copied-stack size and mode, for choosing `record`'s defaults.

For each interpreter, workload and stack size (8, 16, 32 KiB), `perf-trampoline record`
runs in the unwind mode (perf's output streamed through our unwinder)
and in the dwarf mode (perf.data, perf inject --jit), and `perf record -z` records the same
program once more (what a compressed perf.data would cost). Printed per row: samples, the share
of samples with the workload's full Python chain, and bytes per sample of each recording.

Workloads: `seed` (examples/seed_example.py: <module> > baz > bar > foo), `threads`
(tests/python/busy_threads.py, 4 threads: worker > step at the base of every thread's stack)
and `deep` (scripts/deep_stack.py: busy 31 Python calls deep, the chain complete only when
the copied stack reaches <module>).
"""

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

from bench_process.runner import chosen_interpreters, clean_env

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKLOADS = {
    "seed": (ROOT / "examples" / "seed_example.py", ["60000000"], lambda q: q == ["<module>", "baz", "bar", "foo"]),
    "threads": (ROOT / "tests" / "python" / "busy_threads.py", ["5"], lambda q: q[:2] == ["worker", "step"]),
    # 30 levels: about 21 KiB of C stack with the hook on (~700 bytes per Python call).
    "deep": (ROOT / "scripts" / "deep_stack.py", ["30"], lambda q: q == ["<module>"] + ["level"] * 31 + ["spin"]),
}


def qualnames(frames, filename):
    return [f[4:].rsplit(":" + filename, 1)[0] for f in frames if f.startswith("py::") and f.endswith(":" + filename)]


def folded(path):
    for line in pathlib.Path(path).read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        yield stack.split(";"), int(n)


def record(interp, work, prog, args, full_chain, mode, stack_size, freq):
    """(samples, full-chain share, bytes of perf data per sample) of one `record`: the bytes
    perf wrote, as record reports them (streamed in the unwind mode, the perf.data in dwarf)."""
    out = work / ("%s-%d.svg" % (mode, stack_size))
    cmd = interp.wrap + [interp.python, "-m", "perf_trampoline", "record", "--mode", mode,
                         "--freq", str(freq), "--stack-size", str(stack_size), "-o", str(out), "--",
                         interp.python, str(prog)] + args
    done = subprocess.run(cmd, cwd=work, env=clean_env({}), capture_output=True)
    err = done.stderr.decode(errors="replace")
    if done.returncode != 0:
        sys.exit("bench-stack-size: %s failed: %s" % (" ".join(cmd), err[-2000:]))
    m = re.search(r"recording: \d+ samples, ([\d.]+) (MB|KB) of perf data|recorded ([\d.]+) MB", err)
    if not m:
        sys.exit("bench-stack-size: no size in record's output: %s" % err[-2000:])
    size = float(m.group(1) or m.group(3)) * (1e3 if m.group(2) == "KB" else 1e6)
    stacks = list(folded(str(out)[:-4] + ".folded"))
    samples = sum(n for _, n in stacks)
    full = sum(n for frames, n in stacks if full_chain(qualnames(frames, str(prog))))
    return samples, full / max(samples, 1), size / max(samples, 1)


def compressed(interp, work, prog, args, stack_size, freq):
    """Bytes per sample of `perf record -z` of the same program (perf map on)."""
    data = work / ("z-%d.data" % stack_size)
    cmd = interp.wrap + ["perf", "record", "-q", "-z", "-F", str(freq), "--call-graph", "dwarf,%d" % stack_size,
                         "-o", str(data), "--", "env", "PERF_TRAMPOLINE=perf", interp.python, str(prog)] + args
    done = subprocess.run(cmd, cwd=work, env=clean_env({}), capture_output=True)
    if done.returncode != 0 or not data.exists():
        return None
    stats = subprocess.run(interp.wrap + ["perf", "report", "--stats", "-i", str(data)], cwd=work,
                           capture_output=True).stdout.decode()
    size = os.path.getsize(data)
    data.unlink()
    for path in pathlib.Path("/tmp").glob("perf-*.map"):  # the target's, named after our copy of prog
        try:
            if path.stat().st_uid == os.getuid() and str(prog) in path.read_text(errors="replace"):
                path.unlink()
        except OSError:
            pass  # another's, gone since (others clean /tmp too)
    m = re.search(r"SAMPLE events:\s+(\d+)", stats)
    return size / int(m.group(1)) if m and int(m.group(1)) else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--interpreters", default="host-3.11,sid-3.14", help="names from target/interpreters.json")
    ap.add_argument("--workloads", default="seed,threads,deep")
    ap.add_argument("--stack-sizes", default="8192,16384,32768")
    ap.add_argument("--modes", default="unwind,dwarf")
    ap.add_argument("--freq", type=int, default=999)
    args = ap.parse_args()
    interpreters = chosen_interpreters(args.interpreters, "bench-stack-size")
    print("%s; -F %d; one run each; %s" % (time.strftime("%Y-%m-%d"), args.freq, " ".join(sys.argv[1:]) or "defaults"))
    print("| interpreter | workload | stack | mode | samples | full chains | perf data bytes/sample | bytes/sample `-z` |")
    print("|---|---|---|---|---|---|---|---|", flush=True)
    for interp in interpreters:
        work = pathlib.Path(tempfile.mkdtemp(prefix="bench-stack-", dir="/tmp"))
        work.chmod(0o755)
        try:
            for name in args.workloads.split(","):
                src, wargs, full_chain = WORKLOADS[name]
                prog = work / src.name
                shutil.copy(src, prog)
                for stack_size in [int(s) for s in args.stack_sizes.split(",")]:
                    z = compressed(interp, work, prog, wargs, stack_size, args.freq)
                    for mode in args.modes.split(","):
                        samples, share, per_sample = record(interp, work, prog, wargs, full_chain, mode, stack_size,
                                                             args.freq)
                        print("| %s | %s | %d KiB | %s | %d | %.1f%% | %.0f | %s |" % (
                            interp.name, name, stack_size // 1024, mode, samples, 100 * share, per_sample,
                            "%.0f" % z if z else "n/a"), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
