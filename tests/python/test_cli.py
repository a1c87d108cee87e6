"""The perf-trampoline command end to end (record, report, doctor) on real perf and real
interpreters, its flame graphs opened in headless Chromium, and the errors users hit."""

import collections
import ctypes
import json
import os
import pathlib
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import BUSY_FUNCTIONS, INTERPRETERS, ROOT, copy_example, named_for
from perf_trampoline._native import flamegraph_svg
from perf_trampoline.stacks import Profile

ARTEFACTS = ROOT / "target" / "test-artefacts"
SEED_CHAIN = ["<module>", "baz", "bar", "foo"]  # outermost first, as in folded stacks

# The two set-ups the README names (perf 6.1, no frame pointers; perf 7.2, with), and the
# mode record must pick for each: the same, our own unwinding.
MAIN_MODE = {"host-3.11": "unwind", "sid-3.15": "unwind"}
MAIN = [pytest.param(i, id=i.name) for i in INTERPRETERS if i.name in MAIN_MODE] or [
    pytest.param(None, marks=pytest.mark.skip(reason="host-3.11 / sid-3.15 missing: run scripts/test-interpreters.sh"))]

# Works in a function for a while (printing its pid first), then exits as told: "exit",
# "raise" (an uncaught exception) or "segv" (killed by SIGSEGV).
BUSY = BUSY_FUNCTIONS + r'''
print(os.getpid(), flush=True)
busy(float(sys.argv[1]))
if sys.argv[2] == "raise":
    raise RuntimeError("the target fails")
if sys.argv[2] == "segv":
    os.kill(os.getpid(), signal.SIGSEGV)
'''


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PERF_TRAMPOLINE", "PYTHONPERF", "PYTHON_PERF"))}
    env.update(extra or {})
    return env


def cli_argv(interp, args, path=None):
    """``python -m perf_trampoline args`` where the interpreter and its perf live; with
    ``path``, under that PATH (set inside the root: the wrapper itself needs the host's)."""
    env = ["env", "PATH=" + path] if path is not None else []
    return interp.wrap + env + interp.python + ["-m", "perf_trampoline"] + args


def cli(interp, args, work, path=None, env=None, **kw):
    out = subprocess.run(cli_argv(interp, args, path), cwd=work, env=clean_env(env), capture_output=True,
                         timeout=600, **kw)
    return out.returncode, out.stdout.decode(errors="replace"), out.stderr.decode(errors="replace")


def cli_with_cpythons_switch(interp, args, work, env):
    """cli() with CPython's own perf switch in the command's environment: the command's Python
    then has CPython's trampoline on, which writes /tmp/perf-<its pid>.map whatever
    PERF_TRAMPOLINE_DIR says; that file is removed here (its probe of the target removes its
    own). The wrapper into a root execs, so the pid started is the Python's."""
    since = time.time()
    with subprocess.Popen(cli_argv(interp, args), cwd=work, env=clean_env(env), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(timeout=600)
        finally:
            proc.kill()
    for path in named_for(proc.pid, since):
        os.unlink(path)
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def busy_program(work):
    (work / "busy.py").write_text(BUSY)
    return str(work / "busy.py")


def leftovers(pid, since):
    """The files a target process (started after `since`, a time.time()) and perf inject
    left in /tmp. Older files of the same names belong to an earlier process that had the
    same pid: pids wrap (at 32768 here), and /tmp keeps what other runs left."""
    def written_since(path):
        try:
            return os.stat(path).st_mtime >= since
        except FileNotFoundError:
            return False
    return [p for p in named_for(pid) if written_since(p)]


def remove_leftovers(pid):
    for path in named_for(pid):
        os.unlink(path)


def now():
    """A time.time() just before a target starts, early enough for file times (the kernel
    stamps files from a coarser clock)."""
    return time.time() - 1


def folded_stacks(path):
    """{stack (tuple of frame names, outermost first): samples} of a folded file."""
    stacks = {}
    for line in pathlib.Path(path).read_text().splitlines():
        stack, n = line.rsplit(" ", 1)
        stacks[tuple(stack.split(";"))] = int(n)
    return stacks


def python_only(stacks):
    """Folded stacks reduced to the thread and the Python frames (those with any)."""
    out = collections.Counter()
    for stack, n in stacks.items():
        py = tuple(f for f in stack if f.startswith("py::"))
        if py:
            out[stack[:1] + py] += n
    return out


def interleaved(stack):
    """Whether native frames sit between the Python frames of a stack."""
    py = [i for i, f in enumerate(stack) if f.startswith("py::")]
    return len(py) >= 2 and py[-1] - py[0] + 1 > len(py)


def qualnames(stack, filename):
    return [f[4:].rsplit(":" + filename, 1)[0] for f in stack if f.startswith("py::") and f.endswith(":" + filename)]


def top_self_function(stdout):
    lines = stdout.splitlines()
    at = lines.index("top Python functions by self samples:")
    return lines[at + 2].split()[-1]  # after the column titles


_recordings = {}


def seed_recording(interp, tmp_path_factory):
    """``record -o out.svg -- python seed_example.py``, once per interpreter: (status, stdout,
    stderr, work directory)."""
    if interp.name not in _recordings:
        work = tmp_path_factory.mktemp("cli-" + interp.name)
        work.chmod(0o755)
        seed = copy_example("seed_example.py", work)
        _recordings[interp.name] = cli(interp, ["record", "-o", "out.svg", "--"] + interp.python
                                       + [str(seed), "40000000"], work) + (work,)
    return _recordings[interp.name]


@pytest.mark.parametrize("main_interp", MAIN)
def test_record_draws_the_seed_example(main_interp, tmp_path_factory):
    status, stdout, stderr, work = seed_recording(main_interp, tmp_path_factory)
    assert status == 0, stderr
    assert "perf-trampoline: mode %s " % MAIN_MODE[main_interp.name] in stderr
    assert (work / "out.svg").read_text().startswith("<?xml")
    stacks = folded_stacks(work / "out.folded")
    total = sum(stacks.values())
    chain = sum(n for stack, n in stacks.items() if qualnames(stack, str(work / "seed_example.py")) == SEED_CHAIN)
    assert total >= 300, "too few samples to judge: %d" % total
    assert chain >= 0.9 * total, "%d of %d samples show <module> > baz > bar > foo" % (chain, total)
    assert sorted(os.listdir(work)) == ["out.folded", "out.svg", "seed_example.py"]


@pytest.mark.parametrize("main_interp", MAIN)
def test_top_table_puts_foo_first(main_interp, tmp_path_factory):
    status, stdout, stderr, work = seed_recording(main_interp, tmp_path_factory)
    assert status == 0, stderr
    assert top_self_function(stdout) == "py::foo:%s" % (work / "seed_example.py")


def chromium(args, timeout=120):
    with tempfile.TemporaryDirectory() as profile:
        out = subprocess.run(
            ["/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--user-data-dir=" + profile] + args, capture_output=True, timeout=timeout)
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-2000:]
    return out.stdout.decode()


@pytest.mark.parametrize("main_interp", MAIN)
def test_flame_graph_in_chromium(main_interp, tmp_path_factory):
    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("no /usr/bin/chromium: run scripts/install-deps.sh")
    status, _, stderr, work = seed_recording(main_interp, tmp_path_factory)
    assert status == 0, stderr
    svg = work / "out.svg"
    dom = ET.fromstring(chromium(["--dump-dom", svg.as_uri()]))
    # The embedded script ran: it makes the drawing fluid, dropping the fixed width.
    assert 'width="1200"' in svg.read_text() and "width" not in dom.attrib
    ns = {"svg": "http://www.w3.org/2000/svg"}
    widest = {}
    for g in dom.iterfind(".//svg:g", ns):
        title, rect = g.find("svg:title", ns), g.find("svg:rect", ns)
        if title is None or rect is None:
            continue
        for qual in ("foo", "bar", "baz"):
            if title.text.startswith("py::%s:%s " % (qual, work / "seed_example.py")):
                width = float(rect.get("width").rstrip("%"))
                if width > widest.get(qual, (0, 0))[0]:
                    widest[qual] = (width, float(rect.get("y")))
    assert set(widest) == {"foo", "bar", "baz"}, widest
    # Callees are drawn above their callers: smaller y.
    assert widest["foo"][1] < widest["bar"][1] < widest["baz"][1], widest
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / ("cli-flamegraph-%s.png" % main_interp.name)
    height = int(float(ET.parse(svg).getroot().get("height")))
    chromium(["--window-size=1200,%d" % height, "--screenshot=%s" % shot, svg.as_uri()])
    assert shot.stat().st_size > 5000


@pytest.mark.parametrize("mode", ["auto", "older"])
def test_record_picks_the_mode_keeps_and_report_gives_the_same_graph(interp, work, mode):
    """The default mode, and the one record chose before it (still there for perf report)."""
    older = "fp" if interp.has_frame_pointers() else "dwarf"
    chosen = "unwind" if mode == "auto" else older
    prog = busy_program(work)
    since = now()
    status, stdout, stderr = cli(interp, ["record", "--keep", "-o", "rec.svg"] + (["--mode", older] if mode == "older" else [])
                                 + ["--"] + interp.python + [prog, "1", "exit"], work)
    pid = int(stdout.split()[0])
    recorded = stderr
    try:
        assert status == 0, stderr
        dwarf = chosen == "dwarf"
        assert "perf-trampoline: mode %s " % chosen in stderr
        chain = ["<module>", "busy", "spin"]
        if dwarf and interp.perf_version() < (6, 0):
            assert "does not unwind through jitted code" in stderr
            chain = chain[-1:]  # the stacks stop at their innermost Python function
        stacks = folded_stacks(work / "rec.folded")
        hits = sum(n for stack, n in stacks.items() if qualnames(stack, prog) == chain)
        assert hits >= 0.9 * sum(stacks.values()), "%d of %d samples show %s" % (hits, sum(stacks.values()), chain)
        kept = sorted(f for f in os.listdir(work) if ".perf" in f)
        assert kept == (["rec.perf.data", "rec.perf.jit.data"] if dwarf else ["rec.perf.data"])
        assert leftovers(pid, since), "--keep keeps the perf map or jitdump perf needs"
        before = sorted(leftovers(pid, since))
        for data in kept:
            status, stdout, stderr = cli(interp, ["report", data, "-o", "rep.svg"], work)
            assert status == 0, stderr
            assert folded_stacks(work / "rep.folded") == folded_stacks(work / "rec.folded")
            assert top_self_function(stdout) == "py::spin:" + prog
            # Re-injecting puts back the jitted code the kept injected file refers to.
            assert sorted(leftovers(pid, since)) == before
        status, stdout, stderr = cli(interp, ["report", "--native", kept[0], "-o", "native.svg"], work)
        assert status == 0, stderr
        native = folded_stacks(work / "native.folded")
        # The same Python stacks, now with the interpreter's frames between their functions.
        assert python_only(native) == python_only(folded_stacks(work / "rec.folded"))
        assert any(interleaved(stack) for stack in native)
    finally:
        remove_leftovers(pid)
        for jitted in re.findall(r"the jitted code in (/tmp/jitted-\S+)/", recorded):  # what --keep kept
            shutil.rmtree(jitted, ignore_errors=True)


@pytest.mark.parametrize("how, status", [("exit", 0), ("raise", 1), ("segv", 128 + signal.SIGSEGV)])
@pytest.mark.parametrize("main_interp", MAIN)
def test_target_status_passes_through_and_nothing_is_left(main_interp, work, how, status):
    prog = busy_program(work)
    since = now()
    got, stdout, stderr = cli(main_interp, ["record", "-o", "out.svg", "--"] + main_interp.python
                              + [prog, "0.5", how], work)
    pid = int(stdout.split()[0])
    left = leftovers(pid, since)
    remove_leftovers(pid)
    assert got == status, stderr
    if how == "segv":
        assert "the target was killed by SIGSEGV" in stderr
    # A crashed target still gets its flame graph.
    assert any(qualnames(s, prog) == ["<module>", "busy", "spin"] for s in folded_stacks(work / "out.folded"))
    assert left == [], "left in /tmp"
    assert sorted(os.listdir(work)) == ["busy.py", "out.folded", "out.svg"]


@pytest.mark.parametrize("main_interp", MAIN)
def test_missing_perf(main_interp, work):
    prog = busy_program(work)
    status, stdout, stderr = cli(main_interp, ["record", "--"] + main_interp.python + [prog, "0", "exit"], work,
                                 path="/nonexistent")
    assert status == 2
    assert "perf is not on PATH; install perf: `apt install linux-perf` (Debian)" in stderr
    assert stdout == "", "the target must not run"
    assert os.listdir(work) == ["busy.py"]
    status, stdout, stderr = cli(main_interp, ["doctor"], work, path="/nonexistent")
    assert status == 2
    assert "FAIL  perf is not on PATH" in stdout and "apt install linux-perf" in stdout


def deny_perf_event_open():
    """Makes perf_event_open fail with EACCES in this process and its children, as the kernel
    does when perf_event_paranoid forbids it (or a container's seccomp policy)."""
    def insn(code, jt, jf, k):
        return struct.pack("HBBI", code, jt, jf, k)

    ld, jeq, ret = 0x20, 0x15, 0x06
    program = b"".join([
        insn(ld, 0, 0, 4), insn(jeq, 0, 3, 0xC000003E),  # not x86-64: allow
        insn(ld, 0, 0, 0), insn(jeq, 0, 1, 298),  # __NR_perf_event_open
        insn(ret, 0, 0, 0x00050000 | 13),  # SECCOMP_RET_ERRNO | EACCES
        insn(ret, 0, 0, 0x7FFF0000),  # SECCOMP_RET_ALLOW
    ])

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = SockFprog(len(program) // 8, program)
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, ctypes.byref(prog), 0, 0) != 0:  # NO_NEW_PRIVS; SECCOMP
        raise OSError(ctypes.get_errno(), "seccomp")


@pytest.mark.parametrize("main_interp", MAIN)
def test_perf_not_permitted(main_interp, work):
    prog = busy_program(work)
    status, stdout, stderr = cli(main_interp, ["record", "--"] + main_interp.python + [prog, "0", "exit"], work,
                                 preexec_fn=deny_perf_event_open)
    assert status == 2, stderr
    assert "perf could not record (its message is above)" in stderr
    assert "kernel.perf_event_paranoid is" in stderr and "seccomp" in stderr
    assert stdout == "", "the target must not run"
    assert os.listdir(work) == ["busy.py"]
    status, stdout, stderr = cli(main_interp, ["doctor"], work, preexec_fn=deny_perf_event_open)
    assert status == 2
    assert "FAIL  perf may not record here" in stdout and "perf_event_paranoid" in stdout


@pytest.mark.parametrize("command, message, status", [
    (["/nonexistent/python3", "app.py"], "/nonexistent/python3: no such file", 127),
    (["no-such-command-here", "app.py"], "no-such-command-here: command not found (not on PATH)", 127),
    (["PYTHON", "missing.py"], "missing.py: no such file (the script python would run)", 127),
])
@pytest.mark.parametrize("main_interp", MAIN)
def test_target_not_found(main_interp, work, command, message, status):
    command = [main_interp.python[0] if w == "PYTHON" else w for w in command]
    got, stdout, stderr = cli(main_interp, ["record", "--"] + command, work)
    assert got == status and message in stderr, stderr
    assert os.listdir(work) == []


def start_record(interp, work, args):
    return subprocess.Popen(cli_argv(interp, ["record", "-o", "out.svg"] + args), cwd=work, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("main_interp", MAIN)
def test_ctrl_c_during_record_keeps_what_was_recorded(main_interp, work):
    prog = busy_program(work)
    since = now()
    cli_proc = start_record(main_interp, work, ["--"] + main_interp.python + [prog, "120", "exit"])
    pid = int(cli_proc.stdout.readline())
    try:
        time.sleep(1.5)
        cli_proc.send_signal(signal.SIGINT)
        stdout, stderr = cli_proc.communicate(timeout=300)
    finally:
        cli_proc.kill()
    stderr = stderr.decode(errors="replace")
    # perf stops and ends the target with SIGTERM, as plain perf record does.
    assert cli_proc.returncode == 128 + signal.SIGTERM, stderr
    assert "recording stopped by SIGINT; the target was killed by SIGTERM" in stderr
    assert top_self_function(stdout.decode()) == "py::spin:" + prog
    assert leftovers(pid, since) == []
    assert sorted(os.listdir(work)) == ["busy.py", "out.folded", "out.svg"]


@pytest.mark.parametrize("main_interp", MAIN)
def test_ctrl_c_during_processing_keeps_the_recording_for_report(main_interp, work):
    prog = busy_program(work)
    since = now()
    cli_proc = start_record(main_interp, work, ["--mode", "dwarf", "--"] + main_interp.python + [prog, "2", "exit"])
    pid = int(cli_proc.stdout.readline())
    try:
        for line in cli_proc.stderr:
            if line.startswith(b"perf-trampoline: recorded "):  # the processing begins
                cli_proc.send_signal(signal.SIGINT)
                break
        _, stderr = cli_proc.communicate(timeout=300)
        stderr = stderr.decode(errors="replace")
        assert cli_proc.returncode == 130, stderr
        assert "interrupted; the recording is kept in %s" % (work / "out.perf.data") in stderr
        assert sorted(os.listdir(work)) == ["busy.py", "out.perf.data"]
        assert leftovers(pid, since) == ["/tmp/jit-%d.dump" % pid], "the jitdump stays for report, nothing else"
        status, stdout, stderr = cli(main_interp, ["report", "out.perf.data", "-o", "out.svg"], work)
        assert status == 0, stderr
        assert top_self_function(stdout) == "py::spin:" + prog
    finally:
        cli_proc.kill()
        remove_leftovers(pid)


def test_doctor(interp, work):
    status, stdout, stderr = cli(interp, ["doctor"], work)
    assert status == 0, stdout + stderr
    assert stdout.rstrip().endswith("healthy")
    assert "record -o flamegraph.svg -- %s app.py" % interp.python[0] in stdout
    assert ("PERF_TRAMPOLINE=perf perf record -F 999 --call-graph dwarf,32768 -o perf.data -- %s app.py"
            % interp.python[0]) in stdout
    assert "perf-trampoline report perf.data -o flamegraph.svg" in stdout
    # Which mode when, and the perf report workflow for this interpreter.
    assert "unwind (the default)" in stdout and "fp: " in stdout and "dwarf: " in stdout
    if interp.has_frame_pointers():
        assert "has frame pointers: --mode fp works too" in stdout
        assert "PERF_TRAMPOLINE=perf perf record -F 999 -g -o perf.data -- %s app.py" % interp.python[0] in stdout
    else:
        assert "note  %s" % interp.python[0] in stdout and "use --mode dwarf, not --mode fp" in stdout
        assert ("PERF_TRAMPOLINE=perf_jit perf record -F 999 -k 1 --call-graph dwarf,32768 -o perf.data -- %s app.py"
                % interp.python[0]) in stdout
    for check in ("perf may record here", "perf_trampoline is importable", "no other frame-evaluation hook",
                  "/tmp can hold the"):
        assert "ok    " + check in stdout


def test_doctor_and_record_with_cpythons_own_trampoline_switched_on(interp, work):
    if interp.version < (3, 12):
        pytest.skip("CPython %d.%d has no trampoline of its own" % interp.version[:2])
    status, stdout, _ = cli_with_cpythons_switch(interp, ["doctor"], work, {"PYTHONPERFSUPPORT": "1"})
    assert status >= 1
    assert "warn  CPython's own perf trampoline is on at start-up (PYTHONPERFSUPPORT is set)" in stdout
    prog = busy_program(work)
    status, stdout, stderr = cli_with_cpythons_switch(
        interp, ["record", "-o", "out.svg", "--"] + interp.python + [prog, "0.5", "exit"], work,
        {"PYTHONPERFSUPPORT": "1"})
    remove_leftovers(int(stdout.split()[0]))
    assert status == 0, stderr
    assert "PYTHONPERFSUPPORT removed from the target's environment" in stderr
    assert top_self_function(stdout) == "py::spin:" + prog, stderr + stdout


@pytest.mark.parametrize("switch", ["PYTHONPERFSUPPORT", "PYTHON_PERF_JIT_SUPPORT"])
def test_probe_of_a_python_with_cpythons_trampoline_on_leaves_no_file(interp, switch):
    """doctor and record probe the target's Python in the user's environment: CPython's own
    switch there makes the probe write its map (or dump) in /tmp, which it takes away again."""
    if interp.version < ((3, 12) if switch == "PYTHONPERFSUPPORT" else (3, 13)):
        pytest.skip("CPython %d.%d does not know %s" % (interp.version[:2] + (switch,)))
    since = time.time()
    out = interp.run(["-c", "import json, os, sys; from perf_trampoline import interpreter; "
                            "print(json.dumps(interpreter.probe_python(sys.executable, dict(os.environ, %s='1'))))"
                      % switch])
    assert out.returncode == 0, out.stderr.decode()
    probe = json.loads(out.stdout)
    assert probe["cpython_trampoline"], probe
    assert named_for(probe["pid"], since) == []


PERF_SCRIPT = (
    "Web Content  4321/4322 \n"
    "\t7f01 py::inner:/a.py (/tmp/perf-4321.map)\n"
    "\t7f02 _PyEval_EvalFrameDefault+0x1d (/usr/bin/python3)\n"
    "\t7f03 py::outer:/a.py (/tmp/perf-4321.map)\n"
    "\t7f04 main+0x10 (/usr/bin/python3)\n"
    "\n"
    "Web Content  4321/4321 PERF_RECORD_EXIT(4321:4321):(1:1)\n"
    "Web Content  4321/4321 \n"
    "\t7f05 [unknown] (/usr/lib/libc.so.6)\n"
    "\t7f06 main+0x10 (/usr/bin/python3)\n"
    "\n"
    "python  9/9 \n"
    "\t7f01 py::inner:/a.py (/tmp/perf-9.map)\n"
    "\t7f03 py::outer:/a.py (/tmp/perf-9.map)\n"
    "\t7f03 py::inner:/a.py (/tmp/perf-9.map)\n"
)


def test_profile_folds_python_frames_and_counts_self_and_total():
    profile = Profile()
    profile.add_perf_script(PERF_SCRIPT.splitlines(True))
    assert profile.folded() == ("Web Content;[no Python frame];[unknown] 1\n"
                                "Web Content;py::outer:/a.py;py::inner:/a.py 1\n"
                                "python;py::inner:/a.py;py::outer:/a.py;py::inner:/a.py 1\n")
    assert (profile.samples, profile.in_python) == (3, 2)
    assert profile.own == {"py::inner:/a.py": 2}
    assert profile.total == {"py::inner:/a.py": 2, "py::outer:/a.py": 2}  # recursion counts once
    native = Profile(native=True)
    native.add_perf_script(PERF_SCRIPT.splitlines(True))
    assert "Web Content;main;py::outer:/a.py;_PyEval_EvalFrameDefault;py::inner:/a.py 1\n" in native.folded()


def test_flamegraph_svg():
    svg = flamegraph_svg("a;b;c 3\nx;y 1\na;b;c 2\n", "the <title>")
    assert "the &lt;title&gt;" in svg
    assert "<title>c (5 samples, 83.33%)</title>" in svg
    with pytest.raises(ValueError, match="No stack counts found"):
        flamegraph_svg("", "empty")
