#!/usr/bin/env python3
"""Whole-process benchmark: child CPU time of Python workloads without perf support, with CPython's
-X perf / -X perf_jit and with perf-trampoline's backends, run side by side and interleaved.

    python3 scripts/bench-process.py [--rounds N] [--interpreters host-3.11,3.15] [--workloads fib,many]
                                     [--quick]

Interpreters come from target/interpreters.json (scripts/test-interpreters.sh writes it). Every
number is a median over rounds of a paired value: in each round every variant of a workload
runs back to back on one interpreter, so the noise of a shared machine hits both sides of a
ratio alike.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "target" / "interpreters.json"

# The file name every generated function claims to come from: about as long as the path of a
# module in an installed package, which is what the bytes per record depend on.
GENERATED_FILENAME = "/usr/lib/python3/dist-packages/benchapp/handlers_generated.py"

FIB = """
import sys

def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

print(fib(int(sys.argv[1])))
"""

# A scheduler passing packets between four kinds of tasks: method calls, attribute traffic and
# small objects, the shape of a typical object-oriented Python program.
RICHARDS = """
import sys


class Packet:
    __slots__ = ("link", "origin", "kind", "payload")

    def __init__(self, origin, kind):
        self.link = None
        self.origin = origin
        self.kind = kind
        self.payload = [0, 0, 0, 0]

    def enqueue(self, queue):
        self.link = None
        if queue is None:
            return self
        tail = queue
        while tail.link is not None:
            tail = tail.link
        tail.link = self
        return queue


class Task:
    def __init__(self, scheduler, ident, priority):
        self.scheduler = scheduler
        self.ident = ident
        self.priority = priority
        self.inbox = None
        self.waiting = False

    def ready(self):
        return not self.waiting or self.inbox is not None

    def receive(self):
        packet = self.inbox
        if packet is not None:
            self.inbox = packet.link
            self.waiting = False
        return packet

    def deliver(self, packet):
        self.inbox = packet.enqueue(self.inbox)

    def wait(self):
        self.waiting = True


class Producer(Task):
    def __init__(self, scheduler, ident, priority, count, pool):
        super().__init__(scheduler, ident, priority)
        self.left = count
        self.seed = 7
        for _ in range(pool):
            self.deliver(Packet(ident, 0))

    def step(self):
        if self.left == 0:
            return self.scheduler.finish_if_idle()
        packet = self.receive()
        if packet is None:
            return self.wait()
        self.left -= 1
        self.seed = (self.seed * 1103515245 + 12345) & 0x7FFFFFFF
        packet.kind = self.seed % 3
        self.scheduler.send(packet, "worker")


class Worker(Task):
    def step(self):
        packet = self.receive()
        if packet is None:
            return self.wait()
        self.fill(packet)
        self.scheduler.send(packet, "handler_a" if packet.kind else "handler_b")

    def fill(self, packet):
        for i in range(4):
            packet.payload[i] = self.mix(packet.payload[i], i + packet.kind)

    @staticmethod
    def mix(value, salt):
        return (value * 31 + salt) & 0xFFFF


class Handler(Task):
    def __init__(self, scheduler, ident, priority):
        super().__init__(scheduler, ident, priority)
        self.total = 0

    def step(self):
        packet = self.receive()
        if packet is None:
            return self.wait()
        self.total = (self.total + self.weigh(packet)) & 0xFFFFFFFF
        self.scheduler.send(packet, "device")

    def weigh(self, packet):
        return sum(packet.payload) + packet.kind


class Device(Task):
    def step(self):
        packet = self.receive()
        if packet is None:
            return self.wait()
        self.scheduler.send(packet, packet.origin)


class Scheduler:
    def __init__(self):
        self.tasks = {}
        self.order = []
        self.sent = 0
        self.running = True

    def add(self, task):
        self.tasks[task.ident] = task
        self.order = sorted(self.tasks.values(), key=lambda t: -t.priority)

    def send(self, packet, ident):
        self.sent += 1
        self.tasks[ident].deliver(packet)

    def finish_if_idle(self):
        if all(t.inbox is None for t in self.order if t.ident != "producer"):
            self.running = False

    def run(self):
        while self.running:
            for task in self.order:
                if task.ready():
                    task.step()
                    break


def main(count):
    s = Scheduler()
    s.add(Producer(s, "producer", 1, count, pool=6))
    s.add(Worker(s, "worker", 2))
    s.add(Handler(s, "handler_a", 3))
    s.add(Handler(s, "handler_b", 3))
    s.add(Device(s, "device", 4))
    s.run()
    print(s.sent, s.tasks["handler_a"].total, s.tasks["handler_b"].total)


main(int(sys.argv[1]))
"""

GENERATORS = """
import sys


def count(n):
    i = 0
    while i < n:
        yield i
        i += 1


def evens(xs):
    for x in xs:
        if not x & 1:
            yield x


def scaled(xs, k):
    for x in xs:
        yield x * k


def tree(depth):
    if depth == 0:
        yield 1
        return
    yield from tree(depth - 1)
    yield depth
    yield from tree(depth - 1)


n = int(sys.argv[1])
total = sum(scaled(evens(count(n)), 3))
total += sum(x * x for x in count(n) if x % 3)
total += sum(tree(12))
print(total)
"""

JSON = """
import json
import sys

doc = {
    "users": [
        {"id": i, "name": "user%d" % i, "tags": ["a", "b", str(i % 7)], "score": i * 1.5,
         "active": i % 2 == 0, "address": {"street": "%d Main St" % i, "zip": "%05d" % i}}
        for i in range(100)
    ],
    "meta": {"version": 3, "source": "bench"},
}
total = 0
for _ in range(int(sys.argv[1])):
    text = json.dumps(doc)
    total += len(json.loads(text)["users"])
print(total)
"""

# `prepare N` compiles N distinct functions into a marshal file, as a .pyc holds them; `run N`
# loads it, defines them with exec and calls each twice. Compiling is kept out of the timed
# runs: it costs ten times more than everything measured here and would drown it in noise.
MANY = """
import marshal
import os
import sys

mode, n = sys.argv[1], int(sys.argv[2])
path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "many-%d-%s.marshal" % (n, sys.implementation.cache_tag))
if mode == "prepare":
    source = "".join("def handler_%d(x):\\n    return x + %d\\n" % (i, i) for i in range(n))
    with open(path, "wb") as f:
        marshal.dump(compile(source, __FILENAME__, "exec"), f)
else:
    with open(path, "rb") as f:
        code = marshal.loads(f.read())
    namespace = {}
    exec(code, namespace)
    functions = [namespace["handler_%d" % i] for i in range(n)]
    total = 0
    for f in functions:
        total += f(1)
    for f in functions:
        total += f(2)
    print(total)
""".replace("__FILENAME__", repr(GENERATED_FILENAME))


class Workload:
    def __init__(self, name, script, arg, quick_arg=None, code_objects=0, prefix=(), creation=False):
        self.name = name
        self.script = script
        self.arg = arg
        self.quick_arg = quick_arg if quick_arg is not None else arg
        # Functions that each run for the first time in the workload.
        self.code_objects = code_objects
        # About the cost of new code objects and of turning support on, not about calls.
        self.creation = creation or code_objects > 0
        self.prefix = list(prefix)

    def args(self, quick):
        return self.prefix + [str(self.quick_arg if quick else self.arg)]


# Sizes: about 0.2 s of CPU each on this machine's 3.11 without support (half with --quick).
WORKLOADS = [
    Workload("fib", "fib.py", 31, 30),
    Workload("richards", "richards.py", 30000, 13000),
    Workload("generators", "generators.py", 1100000, 500000),
    Workload("json", "json_rt.py", 600, 270),
    Workload("many", "many.py", 100000, code_objects=100000, prefix=["run"]),
    Workload("many10k", "many.py", 10000, code_objects=10000, prefix=["run"]),
    Workload("startup", "startup.py", 0, creation=True),
]
# ru_maxrss cannot serve: a child forked from this script starts out as big as this script, and
# the kernel keeps that high-water mark across exec. The new image's own peak is VmHWM.
PEAK_RSS = """
with open("/proc/self/status") as status:
    print([line.split()[1] for line in status if line.startswith("VmHWM:")][0], "kB peak RSS")
"""

SCRIPTS = {name: text + PEAK_RSS for name, text in {
    "fib.py": FIB, "richards.py": RICHARDS, "generators.py": GENERATORS, "json_rt.py": JSON,
    "many.py": MANY, "startup.py": ""}.items()}


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
    """Runs cmd; returns (CPU seconds, peak RSS in KiB, pid, output). CPU is user + system of the
    child and everything it waited for, from wait4: no wall clock, no other process."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode != 0:
        raise RunFailed("exit %d: %s\n%s" % (p.returncode, " ".join(cmd), text[-2000:]))
    peak = [line.split()[0] for line in text.splitlines() if line.endswith(" kB peak RSS")]
    return usage.ru_utime + usage.ru_stime, int(peak[-1]) if peak else 0, p.pid, text


def count_records(path):
    """Records in a perf map (lines) or a jitdump (CODE_LOAD records)."""
    data = path.read_bytes()
    if path.name.endswith(".map"):
        return data.count(b"\n")
    loads, pos = 0, struct.unpack_from("=I", data, 8)[0]
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("=II", data, pos)
        loads += kind == 0
        pos += max(size, 8)
    return loads


class Bench:
    def __init__(self, args):
        self.quick = args.quick
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="pt-bench-", dir="/tmp"))
        # The sid interpreters run as root in a chroot that shares /tmp: they must read it.
        self.dir.chmod(0o755)
        for name, text in SCRIPTS.items():
            (self.dir / name).write_text(text)
        # (interpreter, workload, variant) -> per-round lists
        self.cpu = {}
        self.rss = {}
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
                self.retry(lambda: run_child(cmd, clean_env({})), interp.name + " prepare " + w.name)

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
            cpu, rss, pid, text = run_child(cmd, env)
            files = [pathlib.Path("/tmp") / o.format(pid=pid) for o in variant.outputs]
            try:
                missing = [str(f) for f in files if not f.exists()]
                if missing:
                    raise RunFailed("%s wrote no %s: %s" % (variant.name, ", ".join(missing), text[-500:]))
                sizes = [(f.stat().st_size, count_records(f)) for f in files] if workload.code_objects else []
            finally:
                for f in files:
                    f.unlink(missing_ok=True)
            return cpu, rss, sizes

        cpu, rss, sizes = self.retry(once, "%s %s %s" % (interp.name, workload.name, variant.name))
        key = (interp.name, workload.name, variant.name)
        self.cpu.setdefault(key, []).append(cpu)
        self.rss.setdefault(key, []).append(rss)
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


def fmt_range(values, digits=3):
    return "%.*f (%.*f–%.*f)" % (digits, statistics.median(values), digits, min(values), digits, max(values))


def paired(a, b, op):
    return [op(x, y) for x, y in zip(a, b)]


def ratio(x, y):
    return x / y


def growth(small, large, fixed):
    return (large - fixed) / (small - fixed) if small > fixed else float("inf")


def report(bench, interpreters, workloads):
    out = []
    lines = out.append
    ratio_rows = [w for w in workloads if not w.creation]
    verdicts = []
    if ratio_rows:
        lines("### CPU time relative to no support (paired median, min–max over rounds)\n")
        names = [v.name for v in VARIANTS if not v.creation_only and v.name != "none"]
        lines("| interpreter | workload | none (s) | " + " | ".join(names) + " | ours-perf / cpython-perf"
              " | ours-perf_jit / cpython-perf_jit |")
        lines("|---" * (len(names) + 5) + "|")
        for interp in interpreters:
            for w in ratio_rows:
                base = bench.cpu[(interp.name, w.name, "none")]
                cells = []
                for n in names:
                    t = bench.cpu.get((interp.name, w.name, n))
                    cells.append(fmt_range(paired(t, base, ratio)) if t else "–")
                for ours in ("ours-perf", "ours-perf_jit"):
                    builtin = bench.cpu.get((interp.name, w.name, BUILTIN_OF[ours]))
                    if builtin is None:
                        cells.append("–")
                        continue
                    rs = paired(bench.cpu[(interp.name, w.name, ours)], builtin, ratio)
                    cells.append(fmt_range(rs))
                    verdicts.append(("per-call ratio vs CPython's built-in <= 1.02",
                                     "%s %s %s" % (interp.name, w.name, ours), statistics.median(rs), 1.02))
                lines("| %s | %s | %.3f | %s |" % (interp.name, w.name, statistics.median(base), " | ".join(cells)))
        lines("")

    creation = [w for w in workloads if w.code_objects]
    if creation:
        lines("### Cost per new code object (µs; (CPU with − CPU without) / functions, paired median, min–max)"
              " and output bytes per record\n")
        lines("| interpreter | workload | variant | µs per code object | × below CPython's built-in"
              " | bytes per record |")
        lines("|---|---|---|---|---|---|")
        for interp in interpreters:
            for w in creation:
                base = bench.cpu[(interp.name, w.name, "none")]
                per = {}
                for v in interp.variants(w)[1:]:
                    t = bench.cpu[(interp.name, w.name, v.name)]
                    per[v.name] = paired(t, base, lambda x, y: (x - y) / w.code_objects * 1e6)
                for v in interp.variants(w)[1:]:
                    us = per[v.name]
                    builtin = per.get(BUILTIN_OF.get(v.name))
                    below = "%.2f" % (statistics.median(builtin) / statistics.median(us)) if builtin else "–"
                    sizes = bench.file_bytes.get((interp.name, w.name, v.name), [])
                    size_text = " + ".join("%.0f" % (b / max(n, 1)) for b, n in sizes)
                    lines("| %s | %s | %s | %s | %s | %s |" % (interp.name, w.name, v.name, fmt_range(us, 2),
                                                              below, size_text))
                    if w.name == "many" and v.name in ("ours-perf", "ours-both"):
                        limit = 0.3 if v.name == "ours-perf" else 0.6
                        verdicts.append(("first-call cost <= %.1f µs" % limit, "%s %s" % (interp.name, v.name),
                                         statistics.median(us), limit))
                        if builtin:
                            verdicts.append(("first-call cost: ours / CPython's built-in <= 0.25",
                                             "%s %s" % (interp.name, v.name),
                                             statistics.median(us) / statistics.median(builtin), 0.25))
        lines("")

    names = {w.name for w in workloads}
    if {"many", "many10k"} <= names:
        lines("### Growth: the support's extra cost at 100,000 vs 10,000 functions (paired medians)\n")
        lines("| interpreter | variant | extra CPU at start-up (ms) | extra CPU 10k (ms) | extra CPU 100k (ms) | ratio"
              " | ratio less start-up | µs per function 10k→100k | extra peak RSS at start-up (KiB)"
              " | extra peak RSS 10k (KiB) | extra peak RSS 100k (KiB) | ratio | ratio less start-up"
              " | bytes per function 10k→100k |")
        lines("|---" * 14 + "|")
        many = next(w for w in workloads if w.name == "many")
        added = many.code_objects - next(w for w in workloads if w.name == "many10k").code_objects
        for interp in interpreters:
            def extra(table, wname, variant):
                return statistics.median(paired(table[(interp.name, wname, variant)],
                                                table[(interp.name, wname, "none")], lambda x, y: x - y))

            for v in interp.variants(many)[1:]:
                cpu10, cpu100 = extra(bench.cpu, "many10k", v.name) * 1e3, extra(bench.cpu, "many", v.name) * 1e3
                rss10, rss100 = extra(bench.rss, "many10k", v.name), extra(bench.rss, "many", v.name)
                # Activation (import, compile, open files, the extension's pages) is paid once
                # whatever the count; "less start-up" takes it out of both sides.
                start = "startup" in names
                cpu0 = extra(bench.cpu, "startup", v.name) * 1e3 if start else 0.0
                rss0 = extra(bench.rss, "startup", v.name) if start else 0
                cpu_ratio, cpu_net = growth(cpu10, cpu100, 0), growth(cpu10, cpu100, cpu0)
                rss_ratio, rss_net = growth(rss10, rss100, 0), growth(rss10, rss100, rss0)
                # The slope columns: what one more function costs once the fixed costs are paid,
                # free of what start-up leaves behind for reuse.
                lines("| %s | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %d | %d | %d | %.2f | %.2f | %.1f |" % (
                    interp.name, v.name, cpu0, cpu10, cpu100, cpu_ratio, cpu_net, (cpu100 - cpu10) * 1e3 / added,
                    rss0, rss10, rss100, rss_ratio, rss_net, (rss100 - rss10) * 1024 / added))
                if v.name.startswith("ours"):
                    case = "%s %s" % (interp.name, v.name)
                    verdicts.append(("10x code objects costs <= 10.5x CPU", case, cpu_ratio, 10.5))
                    verdicts.append(("10x code objects costs <= 10.5x CPU, less start-up", case, cpu_net, 10.5))
                    verdicts.append(("10x code objects costs <= 10.5x memory", case, rss_ratio, 10.5))
                    verdicts.append(("10x code objects costs <= 10.5x memory, less start-up", case, rss_net, 10.5))
        lines("")

    if verdicts:
        lines("### Targets (each case's value is in the tables above)\n")
        lines("| target | met in | worst case | its value |")
        lines("|---|---|---|---|")
        for target in dict.fromkeys(t for t, _, _, _ in verdicts):
            cases = [(value, case, limit) for t, case, value, limit in verdicts if t == target]
            met = sum(value <= limit for value, _, limit in cases)
            value, case, _ = max(cases)
            lines("| %s | %d of %d | %s | %.3f |" % (target, met, len(cases), case, value))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, help="rounds of every variant of every workload (default 12, 3 with --quick)")
    ap.add_argument("--interpreters", help="comma-separated names or versions from target/interpreters.json")
    ap.add_argument("--workloads", help="comma-separated, from: " + ", ".join(w.name for w in WORKLOADS))
    ap.add_argument("--quick", action="store_true", help="fewer rounds, smaller per-call workloads")
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
    bench = Bench(args)
    try:
        bench.run(interpreters, workloads, rounds)
    finally:
        bench.close()
    print("%d rounds, %s, %s; %s" % (rounds, "quick" if args.quick else "full",
                                     time.strftime("%Y-%m-%d"), " ".join(sys.argv[1:]) or "defaults"))
    print()
    print(report(bench, interpreters, workloads))


if __name__ == "__main__":
    main()
