"""Runs assorted Python code with perf support on and reports, as JSON on stdout, every code
object that ran (seen by a tracer, independently of perf_trampoline), the perf map written for
this process, and this process's executable anonymous mappings, read while it still runs."""

import json
import os
import sys

import perf_trampoline

seen = {}


def tracer(frame, event, arg):
    if event == "call":
        seen[id(frame.f_code)] = frame.f_code  # keep it alive so ids stay unique
    return None


def name_of(code):
    return "py::%s:%s" % (getattr(code, "co_qualname", code.co_name), code.co_filename)


class Shape:
    def __init__(self, n):
        self.n = n

    def area(self):
        return sum(i * i for i in range(self.n))


def gen(n):
    for i in range(n):
        yield i


def workload():
    total = Shape(5).area() + sum(gen(3)) + (lambda x: x + 1)(1)
    total += len([c for c in "abc"])
    exec("def made_by_exec():\n    return 7\nresult = made_by_exec()", {})
    import json as _json  # already imported: no new code runs
    return total + len(_json.dumps([1]))


# Traced from when support is on: activate() itself is partly Python (the JIT check in jit.py)
# that runs before there is any trampoline to name it.
perf_trampoline.activate(strategy=sys.argv[1] if len(sys.argv) > 1 else "stamp")
sys.settrace(tracer)
workload()
sys.settrace(None)
perf_trampoline.deactivate()  # a C call: nothing below gets a trampoline

with open("/proc/self/maps") as f:
    maps = f.read()
with open(perf_trampoline._native.output_path("perf map", os.getpid()), "rb") as f:
    perf_map = f.read().decode("utf-8", "surrogateescape")
expected = [name_of(c) for c in seen.values()] + [name_of(tracer.__code__)]
json.dump({"expected": expected, "maps": maps, "perf_map": perf_map,
           "state": {k: v for k, v in perf_trampoline._state().items() if k != "outputs"}},
          sys.stdout)
