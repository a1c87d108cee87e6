"""Running and measuring: interpreters, support variants, child processes, their CPU, memory and output files."""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from .workloads import SCRIPTS, parse_report

try:
    from perf_trampoline._native import read_jitdump
except ImportError:
    sys.exit("bench-process: run it with the test venv's python, which has perf_trampoline: "
             "target/venvs/3.11/bin/python scripts/bench-process.py")

ROOT = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "target" / "interpreters.json"


class Variant:
    def __init__(self, name, since, args=(), env=None, output=None, creation_only=False):
        self.name = name
        self.since = since  # first CPython version that has it
        self.args = list(args)
        self.env = env or {}
        # Files this variant must write, relative to /tmp, "{pid}" filled in.
        self.outputs = output or []
        self.creation_only = creation_only  # run only on workloads that create code objects


MAP = "perf-{pid}.map"
DUMP = "jit-{pid}.dump"
VARIANTS = [
    Variant("none", (3, 0)),
    Variant("cpython-perf", (3, 12), ["-X", "perf"], output=[MAP]),
    Variant("cpython-perf_jit", (3, 13), ["-X", "perf_jit"], output=[DUMP]),
    Variant("ours-perf", (3, 0), env={"PERF_TRAMPOLINE": "perf"}, output=[MAP]),
    Variant("ours-perf_jit", (3, 0), env={"PERF_TRAMPOLINE": "perf_jit"}, output=[DUMP]),
    # Both outputs at once only matters where records are written: the call path is the same.
    Variant("ours-both", (3, 0), env={"PERF_TRAMPOLINE": "perf,perf_jit"}, output=[MAP, DUMP],
            creation_only=True),
]
# Which CPython built-in each of our variants is held against.
BUILTIN_OF = {"ours-perf": "cpython-perf", "ours-perf_jit": "cpython-perf_jit", "ours-both": "cpython-perf_jit"}


class Interpreter:
    def __init__(self, entry):
        self.name = entry["name"]
        self.version = tuple(int(x) for x in entry["version"].split("."))
        self.python = entry["python"]
        self.wrap = entry["wrap"]
        # in-root.sh spends ~20 ms of CPU per call (bash, four mount checks) and would dilute
        # every ratio; its mounts stay after one call, so timed runs enter the root by chroot.
        if len(self.wrap) == 2 and self.wrap[0].endswith("/in-root.sh"):
            self.timed_wrap = ["chroot", self.wrap[1]]
        else:
            self.timed_wrap = self.wrap

    def variants(self, workload):
        return [v for v in VARIANTS
                if self.version >= v.since and (workload.creation or not v.creation_only)]


def clean_env(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERF_TRAMPOLINE", "PYTHONPERF", "PYTHON_PERF"))}
    env["PYTHONHASHSEED"] = "0"
    env.update(extra)
    return env


class RunFailed(Exception):
    pass


def run_child(cmd, env):
    """Runs cmd; returns (CPU seconds, pid, output). CPU is user + system of the child and
    everything it waited for, from wait4: no wall clock, no other process."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode != 0:
        raise RunFailed("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), text[-2000:]))
    return usage.ru_utime + usage.ru_stime, p.pid, text


def count_records(path):
    """(bytes up to the end of the last record, records) of a perf map (non-blank lines) or a
    jitdump (CODE_LOAD records)."""
    data = path.read_bytes()
    if path.name.endswith(".map"):
        # A writer killed with SIGKILL may leave a tail of blank lines behind its last record.
        lines = [line for line in data.split(b"\n") if line.strip()]
        return sum(len(line) + 1 for line in lines), len(lines)
    # The extension's reader stops at a zeroed header (the unwritten tail of a killed writer's
    # file) and at a record cut short.
    dump = read_jitdump(path)
    return dump["end"], sum(r["kind"] == "load" for r in dump["records"])


class Bench:
    def __init__(self, quick):
        self.quick = quick
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="pt-bench-", dir="/tmp"))
        # The sid interpreters run as root in a chroot that shares /tmp: they must read it.
        self.dir.chmod(0o755)
        for name, text in SCRIPTS.items():
            (self.dir / name).write_text(text)
        # (interpreter, workload, variant) -> one value per round, in round order: the report
        # pairs the variants' values by index.
        self.cpu = {}  # whole process, from wait4 (s)
        self.work_cpu = {}  # the workload's own report of its work section (s)
        self.rss = {}  # peak (KiB)
        self.file_bytes = {}  # (interpreter, workload, variant) -> [(bytes, records) per output]

    def command(self, interp, workload, variant):
        return (interp.timed_wrap + [interp.python] + variant.args + [str(self.dir / workload.script)]
                + workload.args(self.quick))

    def prepare(self, interp, workloads):
        """One untimed run per interpreter: enters the root through its wrapper (mounts), checks
        that our package imports, and compiles the many-functions modules."""
        probe = interp.wrap + [interp.python, "-c", "import perf_trampoline._native"]
        self.retry(lambda: run_child(probe, clean_env({})), interp.name + " probe")
        for w in workloads:
            if w.script == "many.py":
                cmd = interp.wrap + [interp.python, str(self.dir / "many.py"), "prepare", str(w.arg)]
                self.retry(lambda cmd=cmd: run_child(cmd, clean_env({})), interp.name + " prepare " + w.name)

    @staticmethod
    def retry(fn, what, attempts=4):
        # Others rebuild the wheel in these venvs now and then; a run caught in between fails
        # (or runs without our package), and the same run a little later works.
        for attempt in range(attempts):
            try:
                return fn()
            except RunFailed as e:
                if attempt == attempts - 1:
                    raise
                print("bench-process: %s failed, retrying: %s" % (what, str(e).splitlines()[0]), file=sys.stderr)
                time.sleep(5)

    def measure(self, interp, workload, variant):
        cmd = self.command(interp, workload, variant)
        env = clean_env(variant.env)

        def once():
            cpu, pid, text = run_child(cmd, env)
            files = [pathlib.Path("/tmp") / o.format(pid=pid) for o in variant.outputs]
            try:
                missing = [str(f) for f in files if not f.exists()]
                if missing:
                    raise RunFailed("%s wrote no %s: %s" % (variant.name, ", ".join(missing), text[-500:]))
                sizes = [count_records(f) for f in files] if workload.code_objects else []
            finally:
                for f in files:
                    f.unlink(missing_ok=True)
            return (cpu, *parse_report(text), sizes)

        cpu, rss, work, sizes = self.retry(once, "%s %s %s" % (interp.name, workload.name, variant.name))
        key = (interp.name, workload.name, variant.name)
        self.cpu.setdefault(key, []).append(cpu)
        self.rss.setdefault(key, []).append(rss)
        if work is not None:
            self.work_cpu.setdefault(key, []).append(work)
        if sizes:
            self.file_bytes[key] = sizes

    def run(self, interpreters, workloads, rounds):
        started = time.monotonic()
        for interp in interpreters:
            self.prepare(interp, workloads)
        for r in range(rounds):
            for w in workloads:
                for interp in interpreters:
                    vs = interp.variants(w)
                    # Rotate the order so no variant always runs first (cold caches) or last.
                    k = r % len(vs)
                    for v in vs[k:] + vs[:k]:
                        self.measure(interp, w, v)
            print("bench-process: round %d/%d done, %.0f s" % (r + 1, rounds, time.monotonic() - started),
                  file=sys.stderr)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)
