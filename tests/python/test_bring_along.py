"""``record`` on interpreters that do not have perf_trampoline installed (issue 21): the
command from one venv brings its own installation along for the recorded process tree, the
target's own sitecustomize and usercustomize still run, ``sys.path`` is what the program
would see without us, nothing is left behind; and the one-line refusals where our module
cannot work."""

import json
import os
import pathlib
import stat
import subprocess
import sys

import pytest

from conftest import INTERPRETERS
from test_cli import cli, folded_stacks, named_for, qualnames

from perf_trampoline import bring_along

PYENV = pathlib.Path.home() / ".pyenv" / "versions"

# Busy in a function of its own in each role; prints what it sees of its start-up as one JSON
# line. The parent then runs a child of the same interpreter (a new process: support must
# reach it through the environment).
PROGRAM = r'''
import json, os, subprocess, sys, time
def spin(seconds):
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n
def busy(seconds):
    return spin(seconds)
def child_busy(seconds):
    return spin(seconds)
role = sys.argv[2]
print(json.dumps({"role": role, "pid": os.getpid(), "path": sys.path,
                  "sitecustomize": getattr(sys.modules.get("sitecustomize"), "__file__", None),
                  "usercustomize": getattr(sys.modules.get("usercustomize"), "__file__", None)}), flush=True)
if role == "parent":
    busy(float(sys.argv[1]))
    subprocess.run([sys.executable, __file__, str(float(sys.argv[1]) / 2), "child"], check=True)
elif role == "child":
    child_busy(float(sys.argv[1]))
'''

# The user's own start-up files, each leaving a trace of the processes it ran in.
USER_HOOK = 'import os\nwith open(os.environ["HOOK_MARKS"], "a") as f:\n    f.write("WHO %d\\n" % os.getpid())\n'

PARENT_CHAIN = ["<module>", "busy", "spin"]
CHILD_CHAIN = ["<module>", "child_busy", "spin"]


class Bare:
    """An interpreter without perf_trampoline (``python``, a path where it runs), the test
    interpreter whose venv runs the command beside it (``cli``), and the venv of the same
    version that has us installed (``installed``)."""

    def __init__(self, cli_name, python, installed_name):
        self.cli_name, self.python, self.installed_name = cli_name, os.path.expanduser(python), installed_name
        self.id = "%s-from-%s" % (os.path.basename(self.python), cli_name)

    def resolve(self):
        by_name = {i.name: i for i in INTERPRETERS}
        cli_interp, installed = by_name.get(self.cli_name), by_name.get(self.installed_name)
        if cli_interp is None or installed is None:
            pytest.skip("%s or %s is not a test interpreter here: run scripts/test-interpreters.sh"
                        % (self.cli_name, self.installed_name))
        root = cli_interp.wrap[1] if cli_interp.wrap else ""
        if not os.path.exists(root + self.python):
            pytest.skip("%s is not on this machine" % self.python)
        return cli_interp, installed


BARE = [
    Bare("sid-3.15", "/usr/bin/python3.13", "sid-3.13"),
    Bare("sid-3.15", "/usr/bin/python3.14", "sid-3.14"),
    Bare("sid-3.15", "/usr/bin/python3.15", "sid-3.15"),
    Bare("bullseye-3.9", "/usr/bin/python3.9", "bullseye-3.9"),
    Bare("host-3.11", "/usr/bin/python3.11", "host-3.11"),
    Bare("host-3.11", "~/.pyenv/versions/3.10.13/bin/python3.10", "host-3.10"),
    Bare("host-3.11", "~/.pyenv/versions/3.12.1/bin/python3.12", "host-3.12"),
]


def user_start_up(work, version):
    """A sitecustomize on the user's PYTHONPATH and a usercustomize in a user site of its own;
    the environment that makes the target find them."""
    site = work / "site"
    user_site = work / "userbase" / "lib" / ("python%d.%d" % version[:2]) / "site-packages"
    user_site.mkdir(parents=True)
    site.mkdir()
    (site / "sitecustomize.py").write_text(USER_HOOK.replace("WHO", "sitecustomize"))
    (user_site / "usercustomize.py").write_text(USER_HOOK.replace("WHO", "usercustomize"))
    return {"PYTHONPATH": str(site), "PYTHONUSERBASE": str(work / "userbase"), "HOOK_MARKS": str(work / "marks")}


def views(stdout):
    """{role: what the program printed of its start-up}."""
    return {v["role"]: v for v in (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))}


def chain_share(stacks, prog):
    """Share of the samples in the program's own functions that carry the parent's or the
    child's full Python chain (the start-up of two interpreters on a busy machine varies)."""
    chains = [(qualnames(stack, prog), n) for stack, n in stacks.items()]
    total = sum(n for chain, n in chains if chain)
    full = sum(n for chain, n in chains if chain in (PARENT_CHAIN, CHILD_CHAIN))
    return full / total if total else 0.0


def our_site_dirs():
    return {p for p in os.listdir("/tmp") if p.startswith("perf-trampoline-site-")}


def files_under(path):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


@pytest.mark.parametrize("bare", BARE, ids=[b.id for b in BARE])
def test_record_brings_us_along(bare, work):
    cli_interp, installed = bare.resolve()
    package = cli_interp.run(["-c", "import perf_trampoline, os; print(os.path.dirname(perf_trampoline.__file__))"])
    package = package.stdout.decode().strip()
    prog = str(work / "prog.py")
    (work / "prog.py").write_text(PROGRAM)
    version = subprocess.run(cli_interp.wrap + [bare.python, "-c", "import sys; print('%d %d' % sys.version_info[:2])"],
                             capture_output=True).stdout.decode().split()
    version = tuple(int(n) for n in version)
    env = user_start_up(work, version)
    has_us = subprocess.run(cli_interp.wrap + [bare.python, "-c", "import perf_trampoline"], capture_output=True)
    assert has_us.returncode != 0, "%s has perf_trampoline installed: not a test of bringing it along" % bare.python

    # What the program sees without perf-trampoline, for comparison.
    baseline = subprocess.run(cli_interp.wrap + [bare.python, prog, "0", "baseline"], capture_output=True, cwd=work,
                              env=dict(os.environ, **env))
    assert baseline.returncode == 0, baseline.stderr
    expected = views(baseline.stdout.decode())["baseline"]
    (work / "marks").unlink()

    before_dirs, before_package = our_site_dirs(), files_under(package)
    status, stdout, stderr = cli(cli_interp, ["record", "-o", "out.svg", "--", bare.python, prog, "1", "parent"],
                                 work, env=env)
    seen = views(stdout)
    pids = [seen[r]["pid"] for r in ("parent", "child") if r in seen]
    left = [p for pid in pids for p in named_for(pid)]
    for path in left:
        os.unlink(path)
    assert status == 0, stderr
    assert "%s does not have perf_trampoline: record brings this one along (%s)" % (bare.python, package) in stderr

    # The Python chains, in the parent and in its child, as with the installed copy.
    share = chain_share(folded_stacks(work / "out.folded"), prog)
    status, _, stderr_installed = cli(cli_interp, ["record", "-o", "installed.svg", "--", installed.python[0], prog,
                                                   "1", "parent"], work, env=env)
    assert status == 0, stderr_installed
    assert "brings this one along" not in stderr_installed
    share_installed = chain_share(folded_stacks(work / "installed.folded"), prog)
    print("%s: full chains in %.3f of the program's samples brought along, %.3f installed"
          % (bare.id, share, share_installed))
    assert share_installed >= 0.9, "installed: %.3f of samples with the full chain" % share_installed
    assert share >= share_installed - 0.05, "brought along %.3f, installed %.3f" % (share, share_installed)
    assert any(qualnames(s, prog) == CHILD_CHAIN for s in folded_stacks(work / "out.folded")), "the child"

    # The program's start-up as without us: its sys.path, the user's own start-up files.
    for role in ("parent", "child"):
        for what in ("path", "sitecustomize", "usercustomize"):
            assert seen[role][what] == expected[what], (role, what)
    marks = (work / "marks").read_text().split("\n")
    for pid in pids:
        assert "sitecustomize %d" % pid in marks and "usercustomize %d" % pid in marks

    # Nothing left behind: in /tmp, in the working directory, in the tool's installation.
    assert left == [], "left in /tmp"
    assert our_site_dirs() - before_dirs == set()
    assert sorted(p.name for p in work.iterdir()) == sorted(
        ["prog.py", "site", "userbase", "marks", "out.svg", "out.folded", "installed.svg", "installed.folded"])
    assert files_under(package) == before_package
