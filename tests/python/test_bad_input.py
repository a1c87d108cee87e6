"""Bad input never changes what the program does: an unwritable map directory, and code
whose names hold newlines or bytes that are not UTF-8."""

import json
import os
import re

import pytest

from conftest import ROOT, map_lines

LINE = re.compile(r"^[0-9a-f]+ [0-9a-f]+ py::[^\n]*$")


@pytest.mark.parametrize("directory,reason", [
    ("/sys", "Permission denied"),           # sysfs refuses new files, even to root
    ("/nonexistent-dir/x", "No such file"),
])
def test_unwritable_map_directory(interp, work, directory, reason):
    script = work / "argv_probe.py"
    script.write_text((ROOT / "tests" / "python" / "argv_probe.py").read_text())
    plain = interp.run([str(script), "exit", "4"])
    for how in ({"env": {"PERF_TRAMPOLINE": "perf"}, "args": []},
                {"env": {}, "args": ["-m", "perf_trampoline"]}):
        out = interp.run(how["args"] + [str(script), "exit", "4"],
                         env=dict(how["env"], PERF_TRAMPOLINE_DIR=directory))
        assert out.returncode == plain.returncode == 4
        assert json.loads(out.stdout)["argv"] == json.loads(plain.stdout)["argv"]
        lines = out.stderr.decode().splitlines()
        assert len(lines) == 1, lines
        assert "%s/perf-" % directory in lines[0] and reason in lines[0], lines
        assert "running without perf support" in lines[0]

    api = interp.run(["-c", "import perf_trampoline\ntry:\n perf_trampoline.activate()\n"
                            "except OSError as e:\n print(type(e).__name__, e)\n"
                            "print(perf_trampoline.is_active())"],
                     env={"PERF_TRAMPOLINE_DIR": directory})
    first, active = api.stdout.decode().splitlines()
    assert first.startswith("PermissionError" if reason.startswith("Perm") else "FileNotFoundError"), first
    assert directory in first and active == "False"


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
