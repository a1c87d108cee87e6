"""Test interpreters (from target/interpreters.json, written by scripts/test-interpreters.sh),
helpers to run Python and perf in them, and the clean-up of the processes tests start."""

import glob
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MANIFEST = ROOT / "target" / "interpreters.json"


# The working part of the test programs: spin() takes the CPU for some seconds under busy().
BUSY_FUNCTIONS = r'''
import json, os, signal, subprocess, sys, time
def spin(seconds):
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n
def busy(seconds):
    return spin(seconds)
'''


class Interpreter:
    def __init__(self, entry):
        self.name = entry["name"]
        self.version = tuple(int(x) for x in entry["version"].split("."))
        # The interpreter's path where it runs, and the command that takes us there (empty
        # on the host; the sid root's entry script for sid's interpreters, whose perf is used).
        self.python = [entry["python"]]
        self.wrap = entry["wrap"]

    def run(self, args, env=None, cwd=None, timeout=300, **kw):
        """Runs this interpreter with ``args``; ``env`` adds to a clean copy of os.environ."""
        full_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("PERF_TRAMPOLINE", "PYTHONPERF", "PYTHON_PERF"))}
        full_env.update(env or {})
        return subprocess.run(self.wrap + self.python + list(args), env=full_env, cwd=cwd, timeout=timeout,
                              capture_output=True, **kw)

    def perf(self, args, cwd=None, timeout=600, **kw):
        return subprocess.run(self.wrap + ["perf"] + list(args), cwd=cwd, timeout=timeout,
                              capture_output=True, **kw)

    def config_var(self, name):
        out = self.run(["-c", "import sysconfig,sys; sys.stdout.write(str(sysconfig.get_config_var(%r) or ''))" % name])
        return out.stdout.decode()

    def perf_version(self):
        """(major, minor) of the perf that runs beside this interpreter."""
        out = self.perf(["--version"]).stdout.decode()  # "perf version 6.1.187"
        major, minor = out.split()[2].split(".")[:2]
        return int(major), int(minor)

    def has_frame_pointers(self):
        return "-fno-omit-frame-pointer" in self.config_var("CFLAGS") + self.config_var("CONFIGURE_CFLAGS")

    def __repr__(self):
        return self.name


def _load():
    if not MANIFEST.exists():
        return []
    return [Interpreter(e) for e in json.loads(MANIFEST.read_text())]


INTERPRETERS = _load()


def pytest_configure(config):
    # Without the interpreters every test of them would be skipped and the run would look
    # green: stop instead, and say how to get them.
    if not INTERPRETERS:
        pytest.exit("no test interpreters (%s is missing or empty): run scripts/test.sh, or "
                    "scripts/test-interpreters.sh once before pytest" % MANIFEST.relative_to(ROOT), returncode=4)


def pytest_generate_tests(metafunc):
    if "interp" in metafunc.fixturenames:
        metafunc.parametrize("interp", [pytest.param(i, id=i.name) for i in INTERPRETERS])


@pytest.fixture
def work(tmp_path):
    """A scratch directory under /tmp, visible to interpreters inside the sid root too."""
    tmp_path.chmod(0o755)
    return tmp_path


def copy_example(name, dest):
    shutil.copy(EXAMPLES / name, dest / name)
    return dest / name


def map_lines(path):
    return [line for line in pathlib.Path(path).read_text(errors="surrogateescape").split("\n") if line]


def named_for(pid, since=None):
    """Our files in /tmp named for process ``pid``: its perf map, jitdump and jitted code;
    with ``since`` (a time.time()), only those changed since then. A test asking whether a
    process wrote nothing passes ``since``: pids come round again (pid_max is 32768 here), and
    an earlier process with the same pid may have left its files in /tmp."""
    found = glob.glob("/tmp/perf-%d.map" % pid) + glob.glob("/tmp/jit-%d.dump" % pid) \
        + glob.glob("/tmp/jitted-%d-*.so" % pid)
    # A second of slack: file times come from the kernel's coarse clock, which can lag
    # time.time(); an earlier process with the same pid cannot have run a second ago.
    return [f for f in found if since is None or os.stat(f).st_mtime >= since - 1]


def recorded_pids(interp, data, cwd=None):
    """The pids of every process a perf recording followed: those sampled, and through the
    task events (fork, exec, exit) those never sampled (a forkserver, a short helper)."""
    out = interp.perf(["script", "--show-task-events", "-F", "pid", "-i", str(data)], cwd=cwd)
    # "PID/TID PERF_RECORD_FORK(CHILD:CHILD):(PID:PID)" for a fork, "PID" for a sample.
    found = re.findall(r"^\s*(\d+)|PERF_RECORD_FORK\((\d+):", out.stdout.decode(errors="replace"), re.M)
    return {int(pid) for pair in found for pid in pair if pid} - {0}


def remove_recorded_outputs(interp, data, since, cwd=None):
    """Removes the files in /tmp named for the processes of a perf recording (``data``) and
    changed since ``since``: CPython's own perf support (-X perf, PYTHONPERFSUPPORT, -X perf_jit)
    writes there whatever PERF_TRAMPOLINE_DIR says, and perf reads maps only there."""
    for pid in recorded_pids(interp, data, cwd):
        for path in named_for(pid, since):
            pathlib.Path(path).unlink(missing_ok=True)


@pytest.fixture
def targets():
    """The processes a test started (each with ``pid`` and ``kill()``): killed when the test
    ends, and the files named for them removed."""
    started = []
    yield started
    for t in started:
        t.kill()
        for path in named_for(t.pid):
            os.unlink(path)
