"""Runs inside a foreign CPython under qemu-user (isa-tests/extension.sh): the whole product
with perf support on, then prints what isa-tests/test_extension.py checks, as one JSON object (the perf map
it reads itself once the process is gone and the map complete).

Only the standard library, the perf_trampoline package and examples/seed_example.py are used,
as the foreign root has nothing else.
"""

import asyncio
import json
import os
import sys
import sysconfig

import perf_trampoline
import seed_example
from perf_trampoline import _native

SEED_N = 2_000


def semantics():
    """A deterministic result from the kinds of calls a trampoline must pass through unchanged:
    recursion, generators, closures, exceptions, methods, comprehensions, coroutines."""

    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    def squares(n):
        for i in range(n):
            yield i * i

    def counter():
        count = 0

        def bump(by):
            nonlocal count
            count += by
            return count

        return bump

    class Shape:
        def __init__(self, sides):
            self.sides = sides

        def describe(self):
            return "%d sides" % self.sides

    def fails(depth):
        if depth == 0:
            raise ValueError("at the bottom")
        return fails(depth - 1)

    async def add_later(a, b):
        await asyncio.sleep(0)
        return a + b

    bump = counter()
    try:
        fails(5)
        caught = None
    except ValueError as e:
        caught = str(e)
    return {
        "fib": fib(15),
        "squares": sum(squares(100)),
        "closure": [bump(1), bump(2), bump(3)],
        "method": Shape(5).describe(),
        "caught": caught,
        "comprehension": sorted({x % 7 for x in range(50)}),
        "coroutine": asyncio.run(add_later(20, 22)),
        "seed": seed_example.foo(SEED_N),
    }


def inner_walk():
    return _native._frame_pointer_walk()


def outer_walk():
    return inner_walk()


def child_only():
    """Code that first runs in the forked child."""
    return semantics()


def executable_mappings():
    """(start, end, path) of every executable mapping, as the emulated process sees them."""
    found = []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if "x" in fields[1]:
                found.append((start, end, fields[5] if len(fields) > 5 else ""))
    return found


def elf_machine():
    """e_machine of the interpreter's own executable: the ISA as the ELF header says it."""
    with open("/proc/self/exe", "rb") as f:
        head = f.read(20)
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def jitdump(path):
    dump = _native.read_jitdump(path)
    records = []
    for r in dump["records"]:
        kept = {k: v for k, v in r.items() if not isinstance(v, bytes)}
        if r["kind"] == "load":
            kept["code_size"] = len(r["code"])
        records.append(kept)
    return {"header": dump["header"], "records": records, "trailing": dump["trailing"]}


def forked_child():
    """Forks; the child runs code of its own and reports on a pipe what it computed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        with os.fdopen(write_end, "w") as w:
            json.dump({"pid": os.getpid(), "semantics": child_only(), "state": dict(perf_trampoline._state())},
                      w, default=str)
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as r:
        report = json.loads(r.read() or "null")
    _, status = os.waitpid(pid, 0)
    return {"pid": pid, "exit": os.waitstatus_to_exitcode(status), "report": report}


def main():
    out = {"pid": os.getpid(), "elf_machine": elf_machine(), "without": semantics(),
           "cflags": sysconfig.get_config_var("CFLAGS") or ""}
    seed_example.baz(SEED_N)
    perf_trampoline.activate("perf,perf_jit")
    out["with"] = semantics()
    seed_example.baz(SEED_N)
    if hasattr(_native, "_frame_pointer_walk"):
        out["walk"] = outer_walk()
    out["fork"] = forked_child()
    perf_trampoline.deactivate()
    state = perf_trampoline._state()
    out["slots_created"] = state["slots_created"]
    out["outputs"] = [str(p) for p in state["outputs"]]
    out["maps"] = executable_mappings()
    dump = [p for p in out["outputs"] if p.endswith(".dump")]
    out["jitdump"] = jitdump(dump[0]) if dump else None
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
