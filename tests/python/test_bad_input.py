"""Bad input never changes what the program does: an unwritable map directory, and code
whose names hold newlines or bytes that are not UTF-8."""

import json
import os
import re
import subprocess

import pytest
from conftest import ROOT, map_lines

LINE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ py::[^\n]*$")


@pytest.mark.parametrize("backend", ["perf", "perf_jit"])
@pytest.mark.parametrize("directory,reason", [
    ("/sys", "Permission denied"),           # sysfs refuses new files, even to root
    ("/nonexistent-dir/x", "No such file"),
])
def test_unwritable_output_directory(interp, work, directory, reason, backend):
    script = work / "argv_probe.py"
    script.write_text((ROOT / "tests" / "python" / "argv_probe.py").read_text())
    plain = interp.run([str(script), "exit", "4"])
    for how in ({"env": {"PERF_TRAMPOLINE": backend}, "args": []},
                {"env": {}, "args": ["-m", "perf_trampoline", "--backend", backend]}):
        out = interp.run(how["args"] + [str(script), "exit", "4"],
                         env=dict(how["env"], PERF_TRAMPOLINE_DIR=directory))
        assert out.returncode == plain.returncode == 4
        assert json.loads(out.stdout)["argv"] == json.loads(plain.stdout)["argv"]
        lines = out.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        prefix = "%s/%s-" % (directory, "jit" if backend == "perf_jit" else "perf")
        assert prefix in lines[0] and reason in lines[0], lines
        assert "running without perf support" in lines[0]

    api = interp.run(["-c", "import perf_trampoline\ntry:\n perf_trampoline.activate(%r)\n"
                            "except OSError as e:\n print(type(e).__name__, e)\n"
                            "print(perf_trampoline.is_active())" % backend],
                     env={"PERF_TRAMPOLINE_DIR": directory})
    first, active = api.stdout.decode().splitlines()
    assert first.startswith("PermissionError" if reason.startswith("Perm") else "FileNotFoundError"), first
    assert directory in first and active == "False"


def test_noexec_dump_directory_is_explained_and_the_program_runs(interp, work):
    """The jitdump's marker mapping needs an executable mapping of the file; on a noexec
    mount it fails, and perf could never find the dump."""
    noexec = work / "noexec"
    noexec.mkdir()
    script = work / "argv_probe.py"
    script.write_text((ROOT / "tests" / "python" / "argv_probe.py").read_text())
    mount = "mount -t tmpfs -o noexec tmpfs %s && exec \"$@\"" % noexec
    plain = interp.run([str(script), "exit", "6"])
    out = subprocess.run(interp.wrap + ["unshare", "--mount", "--propagation", "unchanged", "sh", "-c", mount, "sh"] + interp.python
                         + [str(script), "exit", "6"], capture_output=True, timeout=120,
                         env=dict(os.environ, PERF_TRAMPOLINE="perf_jit", PERF_TRAMPOLINE_DIR=str(noexec)))
    assert out.returncode == plain.returncode == 6
    assert json.loads(out.stdout)["argv"] == json.loads(plain.stdout)["argv"]
    lines = out.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "noexec" in lines[0] and "jit-" in lines[0] and "running without perf support" in lines[0], lines
    assert list(noexec.iterdir()) == [], "a dump perf cannot find must not be left behind"


HOSTILE = r'''
import os, sys
def f():
    return "f ran"
if sys.version_info >= (3, 11):
    f.__code__ = f.__code__.replace(co_name="bad\nname", co_qualname="bad\nqual\r\x1b[31m")
else:
    f.__code__ = f.__code__.replace(co_name="bad\nname\r\x1b[31m")
print(f())
print(os.getpid())
'''


def test_hostile_names_stay_on_one_line_and_change_nothing(interp, work):
    # A file name with a newline and a byte that is not UTF-8 (Python sees "\udcff").
    script = os.path.join(os.fsencode(work), b"we\nird\xff.py")
    with open(script, "wb") as f:
        f.write(HOSTILE.encode())
    env = {"PERF_TRAMPOLINE_DIR": str(work)}
    plain = interp.run([script], env=env)
    ours = interp.run(["-m", "perf_trampoline", script], env=env)
    assert plain.returncode == ours.returncode == 0, ours.stderr.decode()
    assert plain.stdout.splitlines()[0] == ours.stdout.splitlines()[0] == b"f ran"
    assert ours.stderr == b""
    pid = int(ours.stdout.splitlines()[1])
    lines = map_lines(work / ("perf-%d.map" % pid))
    assert lines and all(LINE.match(l) for l in lines), lines
    qual = "bad\\x0aqual\\x0d\\x1b[31m" if interp.version >= (3, 11) else "bad\\x0aname\\x0d\\x1b[31m"
    expected = "py::%s:%s/we\\x0aird\\udcff.py" % (qual, work)
    assert [l for l in lines if "bad" in l and l.endswith(expected)], (expected, lines)
    # The script's own module code too, under the same cleaned file name.
    assert [l for l in lines if l.endswith("py::<module>:%s/we\\x0aird\\udcff.py" % work)]
