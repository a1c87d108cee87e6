"""Every kind of frame behaves exactly as without support; the files we write are safe from
planted links, other users and full or read-only disks; code is never writable and
executable at once."""

import os
import subprocess

import pytest
from conftest import map_lines

FRAMES = r'''
import asyncio, signal, sys, traceback

def show(f):
    try:
        print(f.__name__, repr(f()))
    except BaseException as e:
        print(f.__name__, "raised", "".join(traceback.format_exception(type(e), e, e.__traceback__)))

def gen_values():
    def g():
        x = yield 1
        yield x * 2
    it = g(); a = next(it); return a, it.send(21)

def gen_throw():
    def g():
        try:
            yield 1
        except ValueError as e:
            yield "caught %s" % e
    it = g(); next(it); return it.throw(ValueError("boom"))

def throw_into_a_generator_that_never_ran():
    # Up to 3.10 its code object's first evaluation carries the exception (throwflag; from
    # 3.11 creating the generator runs its code first). Its file name holds a lone surrogate,
    # so naming it raises and clears an error of its own inside CPython's API: the exception
    # being thrown must come through anyway.
    ns = {}
    exec(compile("def fresh():\n    yield 1\n", "gen\udcff.py", "exec"), ns)
    try:
        ns["fresh"]().throw(ValueError("thrown before the first step"))
    except ValueError as e:
        return "kept: %s" % e

def coroutines():
    async def leaf(n):
        await asyncio.sleep(0)
        return n * 2
    async def agen():
        for i in range(3):
            await asyncio.sleep(0)
            yield i
    async def main():
        vals = [v async for v in agen()]
        return vals, await asyncio.gather(leaf(1), leaf(2))
    return asyncio.run(main())

def deep_exception():
    def f(n):
        if n == 0:
            raise KeyError("deep")
        return f(n - 1)
    return f(30)

def keyboard_interrupt():
    def spin():
        while True:
            pass
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    try:
        spin()
    except KeyboardInterrupt:
        return "interrupted"

def tracing():
    events = []
    def tracer(frame, event, arg):
        if frame.f_code.co_name == "traced":
            events.append(event)
        return tracer
    def traced(x):
        return x + 1
    sys.settrace(tracer)
    try:
        traced(1)
    finally:
        sys.settrace(None)
    calls = []
    sys.setprofile(lambda fr, ev, arg: calls.append(ev) if fr.f_code.co_name == "traced" else None)
    try:
        traced(2)
    finally:
        sys.setprofile(None)
    return events, calls

def class_body_lambda_comprehensions():
    class K:
        doubled = [x * 2 for x in range(3)]
        total = sum(x for x in range(4))
    f = lambda y: {k: y for k in "ab"}
    return K.doubled, K.total, f(1), {x for x in range(2)}

def exec_eval():
    ns = {}
    exec("def h(a):\n    return a ** 2\nr = h(7)", ns)
    return ns["r"], eval("[i for i in range(3)]")

for f in (gen_values, gen_throw, throw_into_a_generator_that_never_ran, coroutines, deep_exception, keyboard_interrupt, tracing,
          class_body_lambda_comprehensions, exec_eval):
    show(f)
deep_exception()
'''


def test_every_kind_of_frame_behaves_as_without_support(interp, work):
    script = work / "frames.py"
    script.write_text(FRAMES)
    plain = interp.run([str(script)])
    for backend in ("perf", "perf_jit"):
        ours = interp.run([str(script)], env={"PERF_TRAMPOLINE": backend, "PERF_TRAMPOLINE_DIR": str(work)})
        assert ours.returncode == plain.returncode == 1
        assert ours.stdout == plain.stdout
        assert ours.stderr == plain.stderr  # the final traceback, frame for frame
    assert b"gen_throw 'caught boom'" in plain.stdout and b"interrupted" in plain.stdout
    assert b"'kept: thrown before the first step'" in plain.stdout
    # That generator was named although it was first entered to throw.
    (map_file,) = work.glob("perf-*.map")
    assert any(l.endswith("fresh:gen\\udcff.py") for l in map_lines(map_file)), "no map line for fresh"


LINK = r'''
import os, sys, perf_trampoline
# An attacker's link, planted where this process's output will go, to a file of the victim's.
path = os.path.join(os.environ["PERF_TRAMPOLINE_DIR"], sys.argv[2] % os.getpid())
os.symlink(sys.argv[3], path)
try:
    perf_trampoline.activate(sys.argv[1])
    print("activated")
except OSError as e:
    print(type(e).__name__, e)
'''


@pytest.mark.parametrize("backend,name", [("perf", "perf-%d.map"), ("perf_jit", "jit-%d.dump")])
def test_a_planted_symlink_is_never_followed(interp, work, backend, name):
    victim = work / "victim"
    victim.write_text("precious")
    script = work / "link.py"
    script.write_text(LINK)
    out = interp.run([str(script), backend, name, str(victim)], env={"PERF_TRAMPOLINE_DIR": str(work)})
    text = out.stdout.decode()
    assert text.startswith("OSError") and "Too many levels of symbolic links" in text, text
    assert victim.read_text() == "precious"


OWNED = r'''
import os, stat, sys, perf_trampoline
path = os.path.join(os.environ["PERF_TRAMPOLINE_DIR"], sys.argv[2] % os.getpid())
if sys.argv[1] == "foreign":
    with open(path, "w") as f:
        f.write("someone else's\n")
    os.chown(path, 65534, 65534)
try:
    perf_trampoline.activate(sys.argv[3])
    (lambda: None)()
    print("mode %o" % stat.S_IMODE(os.stat(path).st_mode))
except OSError as e:
    print(type(e).__name__, e)
'''


@pytest.mark.parametrize("backend,name", [("perf", "perf-%d.map"), ("perf_jit", "jit-%d.dump")])
def test_files_are_private_and_never_someone_elses(interp, work, backend, name):
    script = work / "owned.py"
    script.write_text(OWNED)
    mine = interp.run([str(script), "new", name, backend], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert mine.stdout.decode().strip() == "mode 600", mine.stdout + mine.stderr
    theirs = interp.run([str(script), "foreign", name, backend], env={"PERF_TRAMPOLINE_DIR": str(work)})
    text = theirs.stdout.decode()
    assert text.startswith("PermissionError") and "belongs to uid 65534" in text, text
    foreign = [p for p in work.iterdir() if p.stat().st_uid == 65534]
    assert foreign and all(p.read_bytes() == b"someone else's\n" for p in foreign)


WX = r'''
import perf_trampoline, sys
perf_trampoline.activate("perf,perf_jit")
for i in range(5000):
    exec("def f%d():\n    return %d\nf%d()" % (i, i, i), {})
with open("/proc/self/maps") as f:
    print(sum(1 for line in f if "w" in line.split()[1] and "x" in line.split()[1]))
'''


def test_code_is_never_writable_and_executable(interp, work):
    script = work / "wx.py"
    script.write_text(WX)
    out = interp.run([str(script)], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.strip() == b"0"


FILL = r'''
import os, sys, perf_trampoline
perf_trampoline.activate("perf,perf_jit")
total = 0
for i in range(3000):
    ns = {}
    exec("def f%d():\n    return %d" % (i, i), ns)
    total += ns["f%d" % i]()
print(total, flush=True)
'''

READONLY = r'''
import os, sys, perf_trampoline
perf_trampoline.activate("perf,perf_jit")
(lambda: 1)()
# The directory turns read-only while we run (a read-only mount over it); the files already
# open stay writable, but a forked child must open new ones there.
assert os.system("mount -t tmpfs -o ro tmpfs %s" % os.environ["PERF_TRAMPOLINE_DIR"]) == 0
pid = os.fork()
if pid == 0:
    print(sum((lambda n: n * 2)(i) for i in range(10)), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
'''


@pytest.mark.parametrize("how", ["full", "readonly"])
def test_a_full_or_read_only_disk_disables_output_with_one_warning(interp, work, how):
    disk = work / "disk"
    disk.mkdir()
    script = work / "fill.py"
    script.write_text(FILL if how == "full" else READONLY)
    mount = "mount -t tmpfs -o size=%s tmpfs %s && exec \"$@\"" % ("64k" if how == "full" else "1m", disk)
    out = subprocess.run(interp.wrap + ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", mount, "sh"]
                         + interp.python + [str(script)], capture_output=True, timeout=300,
                         env=dict(os.environ, PERF_TRAMPOLINE_DIR=str(disk)))
    assert out.returncode == 0, out.stderr.decode()
    expected = sum(range(3000)) if how == "full" else 90
    assert out.stdout.strip() == str(expected).encode()
    lines = out.stderr.decode().splitlines()
    reason = "No space left on device" if how == "full" else "Read-only file system"
    # One warning per output (map and dump), then silence.
    assert len(lines) == 2 and all(reason in l for l in lines), lines
    assert all(("output disabled" if how == "full" else "output off in this process") in l for l in lines), lines
