"""How support is switched on: `python -m perf_trampoline`, PERF_TRAMPOLINE, and on 3.11 and
older PYTHONPERFSUPPORT / -X perf; bad values print one line and the program runs anyway."""

import json
import os
import shutil
import time

import pytest
from conftest import ROOT, map_lines, named_for

PROBE = ROOT / "tests" / "python" / "argv_probe.py"


def probe(work):
    dest = work / "argv_probe.py"
    shutil.copy(PROBE, dest)
    return dest


def without_pid(stdout):
    d = json.loads(stdout.splitlines()[0])
    d.pop("pid")
    return d


@pytest.mark.parametrize("args", [["a", "-b", "--c=d"], ["exit", "3"], ["raise"]])
def test_runner_behaves_like_plain_python(interp, work, args):
    script = probe(work)
    env = {"PERF_TRAMPOLINE_DIR": str(work)}
    plain = interp.run(["argv_probe.py"] + args, cwd=work, env=env)
    ours = interp.run(["-m", "perf_trampoline", "argv_probe.py"] + args, cwd=work, env=env)
    assert ours.returncode == plain.returncode
    assert without_pid(ours.stdout) == without_pid(plain.stdout)
    assert ours.stderr == plain.stderr  # tracebacks included
    # Support was really on: the script's own code is in its process's map.
    pid = json.loads(ours.stdout.splitlines()[0])["pid"]
    names = [l.split(" ", 2)[2] for l in map_lines(work / ("perf-%d.map" % pid))]
    assert "py::main:%s" % script in names


def test_runner_starts_the_program_at_its_own_module(interp, work):
    """Nothing of the runner's (nor of its set-up) runs with support on: the first function
    the map names is the script's own <module>, and no name is perf_trampoline's."""
    script = probe(work)
    out = interp.run(["-m", "perf_trampoline", str(script)], env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    names = [l.split(" ", 2)[2] for l in map_lines(work / ("perf-%d.map" % json.loads(out.stdout)["pid"]))]
    assert names[0] == "py::<module>:%s" % script, names[:3]
    assert not [n for n in names if "/perf_trampoline/" in n]


def test_runner_passes_on_module_mode(interp, work):
    (work / "modprobe.py").write_text("import sys, perf_trampoline\nprint(__name__, sys.argv[1:], perf_trampoline.is_active())\n")
    out = interp.run(["-m", "perf_trampoline", "-m", "modprobe", "x", "y"], cwd=work,
                     env={"PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().split() == ["__main__", "['x',", "'y']", "True"]


ACTIVE_PROBE = "import perf_trampoline, sys; print(perf_trampoline.is_active(), getattr(sys, 'is_stack_trampoline_active', lambda: None)())"


def test_environment_switch_turns_support_on_at_start_up(interp, work):
    out = interp.run(["-c", ACTIVE_PROBE], env={"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    assert out.stdout.decode().split()[0] == "True"
    assert list(work.glob("perf-*.map")), "no map written"


@pytest.mark.parametrize("switch", [{"env": {"PYTHONPERFSUPPORT": "1"}}, {"args": ["-X", "perf"]}])
def test_cpython_switches_where_cpython_lacks_them(interp, work, switch):
    env = dict(switch.get("env", {}), PERF_TRAMPOLINE_DIR=str(work))
    since = time.time()
    out = interp.run(switch.get("args", []) + ["-c", ACTIVE_PROBE + "; print(__import__('os').getpid())"], env=env)
    assert out.returncode == 0, out.stderr.decode()
    ours, cpythons, pid = out.stdout.decode().split()
    for path in named_for(int(pid), since):  # CPython's own map goes to /tmp whatever we say
        os.unlink(path)
    if interp.version >= (3, 12):
        # CPython handles its own switch; we must not stack a second trampoline on it.
        assert (ours, cpythons) == ("False", "True")
    else:
        assert ours == "True"
        assert list(work.glob("perf-*.map"))


@pytest.mark.parametrize("switches,expected", [
    ({"env": {"PYTHON_PERF_JIT_SUPPORT": "1"}}, "jit"),
    ({"args": ["-X", "perf_jit"]}, "jit"),
    # perf_jit wins over perf at the same level; -X wins over the environment.
    ({"env": {"PYTHONPERFSUPPORT": "1", "PYTHON_PERF_JIT_SUPPORT": "1"}}, "jit"),
    ({"args": ["-X", "perf", "-X", "perf_jit"]}, "jit"),
    ({"args": ["-X", "perf"], "env": {"PYTHON_PERF_JIT_SUPPORT": "1"}}, "map"),
    # Ours names the backends itself and comes first.
    ({"args": ["-X", "perf_jit"], "env": {"PERF_TRAMPOLINE": "perf"}}, "map"),
    ({"env": {"PERF_TRAMPOLINE": "perf,perf_jit"}}, "both"),
])
def test_which_output_each_switch_selects(interp, work, switches, expected):
    cpythons = switches.get("args") or set(switches.get("env", {})) - {"PERF_TRAMPOLINE"}
    if interp.version >= (3, 12) and cpythons:
        pytest.skip("CPython %d.%d handles its own perf switches" % interp.version[:2])
    env = dict(switches.get("env", {}), PERF_TRAMPOLINE_DIR=str(work))
    out = interp.run(switches.get("args", []) + ["-c", "import os; print(os.getpid()); f = lambda: 1; f()"], env=env)
    assert out.returncode == 0 and out.stderr == b"", out.stderr.decode()
    pid = int(out.stdout)
    wrote = {"map": (work / ("perf-%d.map" % pid)).exists(), "jit": (work / ("jit-%d.dump" % pid)).exists()}
    want = {"map": expected in ("map", "both"), "jit": expected in ("jit", "both")}
    assert wrote == want


@pytest.mark.parametrize("how,needle", [
    ({"env": {"PERF_TRAMPOLINE": "perff"}}, "PERF_TRAMPOLINE='perff': unknown backend \"perff\"; accepted: perf, perf_jit, perf,perf_jit"),
    ({"env": {"PYTHONPERFSUPPORT": "yes"}}, "PYTHONPERFSUPPORT='yes' is not valid; accepted: 0, 1"),
    ({"args": ["-X", "perf=2"]}, "-X perf takes no value"),
    ({"runner": ["--backend", "perff"]}, "unknown backend \"perff\"; accepted: perf, perf_jit, perf,perf_jit"),
])
def test_bad_switch_values_print_one_line_and_the_program_still_runs(interp, work, how, needle):
    if interp.version >= (3, 12) and ("PYTHONPERFSUPPORT" in how.get("env", {}) or how.get("args")):
        pytest.skip("CPython %d.%d parses its own PYTHONPERFSUPPORT and -X perf" % interp.version[:2])
    script = probe(work)
    env = dict(how.get("env", {}), PERF_TRAMPOLINE_DIR=str(work))
    runner = ["-m", "perf_trampoline"] + how["runner"] if "runner" in how else []
    plain = interp.run([str(script), "exit", "5"], env={"PERF_TRAMPOLINE_DIR": str(work)})
    bad = interp.run(how.get("args", []) + runner + [str(script), "exit", "5"], env=env)
    assert bad.returncode == plain.returncode == 5
    assert without_pid(bad.stdout) == without_pid(plain.stdout)
    lines = bad.stderr.decode().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "running without perf support" in lines[0], lines
    assert not list(work.glob("perf-*.map")), "support must stay off"


def test_activate_rejects_unknown_backend_naming_the_accepted_ones(interp):
    out = interp.run(["-c", "import perf_trampoline\ntry:\n perf_trampoline.activate('nope')\n"
                            "except ValueError as e:\n print(e)\nprint(perf_trampoline.is_active())"])
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().splitlines() == [
        "unknown backend \"nope\"; accepted: perf, perf_jit, perf,perf_jit", "False"]


# What each switch may add to a process's modules at start-up: every module costs every Python
# started with it some 0.1-0.3 ms (and secrets, once, 12 ms). The package itself is not among
# them where support turns on at once: the switches load _native and _startup alone. jit.py
# comes only while CPython's JIT runs or PYTHON_JIT asks for it, json and tempfile only when an
# attach request arrives.
STARTUP_MODULES = {
    "perf": {"perf_trampoline._native", "perf_trampoline._startup"},
    "standby": {"perf_trampoline", "perf_trampoline._native", "perf_trampoline._startup", "perf_trampoline.standby",
                "perf_trampoline.handoff", "perf_trampoline.namespaces", "atexit", "errno", "stat", "_stat"},
}
SHOW_MODULES = ["-c", "import sys; print(' '.join(sorted(sys.modules)))"]


def modules(interp, args=(), env=None):
    out = interp.run(list(args) + SHOW_MODULES, env=env)
    assert out.returncode == 0 and not out.stderr, out.stderr.decode()
    return set(out.stdout.decode().split())


def test_without_a_switch_our_pth_line_imports_one_small_module(interp):
    isolated = modules(interp, ["-S"])  # -S: no site, so no .pth line runs
    ours = {m for m in modules(interp) - isolated if "perf_trampoline" in m}
    assert ours == {"_perf_trampoline_switches"}


@pytest.mark.parametrize("switch", sorted(STARTUP_MODULES))
def test_a_switch_imports_only_what_start_up_needs(interp, work, switch):
    plain = modules(interp)
    added = modules(interp, env={"PERF_TRAMPOLINE": switch, "PERF_TRAMPOLINE_DIR": str(work)}) - plain
    assert added <= STARTUP_MODULES[switch], sorted(added - STARTUP_MODULES[switch])
    assert {"perf_trampoline._native", "perf_trampoline._startup"} <= added


def test_the_package_imported_after_start_up_finds_support_on(interp, work):
    """The switches load the extension alone; a later `import perf_trampoline` uses that one
    module (support has one owner) and finds support on."""
    check = ("import sys\n"
             "before = 'perf_trampoline' in sys.modules\n"
             "import perf_trampoline, perf_trampoline._native as n\n"
             "print(before, perf_trampoline.is_active(), n is sys.modules['perf_trampoline._native'],\n"
             "      perf_trampoline._native is n)\n")
    out = interp.run(["-c", check], env={"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0 and not out.stderr, out.stderr.decode()
    assert out.stdout.decode().split() == ["False", "True", "True", "True"]


def test_an_extension_that_cannot_load_costs_one_line_and_the_program_runs(interp, work):
    """A broken installation (here an extension module that is no ELF file) is one line
    naming where and the fix; the program runs without support."""
    site = work / "site"
    (site / "perf_trampoline").mkdir(parents=True)
    shutil.copy(str(ROOT / "python" / "data" / "purelib" / "_perf_trampoline_switches.py"), site)
    shutil.copy(str(ROOT / "python" / "perf_trampoline" / "_startup.py"), site / "perf_trampoline")
    (site / "perf_trampoline" / "_native.abi3.so").write_bytes(b"not an ELF file")
    out = interp.run(["-S", "-c", "import sys; sys.path.insert(0, %r); import _perf_trampoline_switches\n"
                                  "print('ran', 'perf_trampoline._native' in sys.modules)" % str(site)],
                     env={"PERF_TRAMPOLINE": "perf", "PERF_TRAMPOLINE_DIR": str(work)})
    assert out.returncode == 0 and out.stdout.decode().split() == ["ran", "False"], out
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1 and "cannot load perf_trampoline from %s" % site in lines[0], lines
    assert "running without perf support; reinstall perf-trampoline" in lines[0], lines
    assert not list(work.glob("perf-*.map"))


TOOLS = ["flamegraph_svg", "unwind_perf_data", "unwind_perf_stream", "perf_data_has_user_stacks", "Samples",
         "PROFILE_FORMATS", "read_jitdump", "prepare_injection"]


def test_the_extensions_tools_are_made_at_their_first_use(interp):
    """Start-up never makes the tools of record/report (module __getattr__); each is there
    when asked for, and a name that is none of them is an AttributeError."""
    check = ("import json, perf_trampoline._native as n\n"
             "before = [t for t in %r if t in vars(n)]\n"
             "got = [t for t in %r if getattr(n, t, None) is not None]\n"
             "print(json.dumps([before, got, hasattr(n, 'no_such_tool')]))\n" % (TOOLS, TOOLS))
    out = interp.run(["-c", check])
    assert out.returncode == 0, out.stderr.decode()
    assert json.loads(out.stdout) == [[], TOOLS, False]
