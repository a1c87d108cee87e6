"""The workloads: the Python scripts the benchmark generates, their sizes, and the lines they report."""

# The file name every generated function claims to come from: about as long as the path of a
# module in an installed package, which is what the bytes per record depend on.
GENERATED_FILENAME = "/usr/lib/python3/dist-packages/benchapp/handlers_generated.py"

WORK_CPU_MARK = " s work CPU"
PEAK_RSS_MARK = " kB peak RSS"

# The process's CPU (user + system, like wait4's) around the work alone: start-up, imports and
# set-up stay out, so a per-call ratio is not diluted by the few ms of turning support on, which
# the `startup` workload measures by itself.
TIMED = """
import time
_work_started = time.process_time()
{work}
print("%.9f{mark}" % (time.process_time() - _work_started))
"""

# ru_maxrss cannot serve: a child forked from the benchmark starts out as big as the benchmark,
# and the kernel keeps that high-water mark across exec. The new image's own peak is VmHWM.
PEAK_RSS = """
with open("/proc/self/status") as status:
    print([line.split()[1] for line in status if line.startswith("VmHWM:")][0] + "{mark}")
""".format(mark=PEAK_RSS_MARK)


def script(setup, work=None):
    """A generated script: setup untimed, then work (top-level code) timed."""
    timed = TIMED.format(work=work.strip("\n"), mark=WORK_CPU_MARK) if work else ""
    return setup + timed + PEAK_RSS


def parse_report(text):
    """(peak RSS in KiB, CPU seconds of the work) from a script's output; 0 and None where absent."""
    lines = text.splitlines()
    rss = [line[:-len(PEAK_RSS_MARK)] for line in lines if line.endswith(PEAK_RSS_MARK)]
    work = [line[:-len(WORK_CPU_MARK)] for line in lines if line.endswith(WORK_CPU_MARK)]
    return int(rss[-1]) if rss else 0, float(work[-1]) if work else None


FIB = script("""
import sys


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
""", """
print(fib(int(sys.argv[1])))
""")

# A scheduler passing packets between four kinds of tasks: method calls, attribute traffic and
# small objects, the shape of a typical object-oriented Python program.
RICHARDS = script("""
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
""", """
main(int(sys.argv[1]))
""")

GENERATORS = script("""
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
""", """
total = sum(scaled(evens(count(n)), 3))
total += sum(x * x for x in count(n) if x % 3)
total += sum(tree(12))
print(total)
""")

JSON = script("""
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
""", """
total = 0
for _ in range(int(sys.argv[1])):
    text = json.dumps(doc)
    total += len(json.loads(text)["users"])
print(total)
""")

# `prepare N` compiles N distinct functions into a marshal file, as a .pyc holds them; `run N`
# loads it, defines them with exec and calls each twice. Compiling is kept out of the timed
# runs: it costs ten times more than everything measured here and would drown it in noise.
# Loading stays out of the timed work too: no code object is called before the exec.
MANY = script("""
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
    sys.exit()
with open(path, "rb") as f:
    code = marshal.loads(f.read())
""".replace("__FILENAME__", repr(GENERATED_FILENAME)), """
namespace = {}
exec(code, namespace)
functions = [namespace["handler_%d" % i] for i in range(n)]
total = 0
for f in functions:
    total += f(1)
for f in functions:
    total += f(2)
print(total)
""")

# File name -> text; Bench writes them into its directory.
SCRIPTS = {"fib.py": FIB, "richards.py": RICHARDS, "generators.py": GENERATORS, "json_rt.py": JSON,
           "many.py": MANY, "startup.py": script("")}


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
