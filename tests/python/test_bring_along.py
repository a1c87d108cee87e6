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
import time

import pytest
from conftest import BUSY_FUNCTIONS, INTERPRETERS, named_for
from perf_trampoline import bring_along
from test_cli import cli, folded_stacks, leftovers, now, qualnames

PYENV = pathlib.Path.home() / ".pyenv" / "versions"

# Busy in a function of its own in each role; prints what it sees of its start-up as one JSON
# line. The parent then runs a child of the same interpreter (a new process: support must
# reach it through the environment).
PROGRAM = BUSY_FUNCTIONS + r'''
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
    since = now()  # files of older processes with the same pids (pids wrap) are not ours
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
    left = [p for pid in pids for p in leftovers(pid, since)]
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


def host_cli():
    host = [i for i in INTERPRETERS if i.name == "host-3.11"]
    if not host:
        pytest.skip("host-3.11 missing: run scripts/test-interpreters.sh")
    return host[0]


# Real interpreters our module cannot work in (pyenv's, where the machine has them).
TOO_OLD = [PYENV / "3.8.18" / "bin" / "python3.8", PYENV / "3.6.15" / "bin" / "python3.6",
           PYENV / "2.7.18" / "bin" / "python2.7"]


def assert_refused(status, stdout, stderr, work, before, reason):
    """record stopped before starting anything, with one line naming the reason and the fix."""
    assert status == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("perf-trampoline: "), stderr
    assert " cannot be profiled: " + reason in stderr and "fix: " in stderr, stderr
    assert stdout == ""
    assert sorted(p.name for p in work.iterdir()) == before, "record made nothing"


@pytest.mark.parametrize("python", TOO_OLD, ids=[p.name for p in TOO_OLD])
def test_record_and_doctor_refuse_a_cpython_older_than_3_9(python, work):
    if not python.exists():
        pytest.skip("%s is not on this machine" % python)
    interp = host_cli()
    (work / "prog.py").write_text(PROGRAM)
    version = python.parent.parent.name  # pyenv's directory is the full version
    status, stdout, stderr = cli(interp, ["record", "-o", "out.svg", "--", str(python), "prog.py", "1", "parent"], work)
    assert_refused(status, stdout, stderr, work, ["prog.py"],
                   "it is CPython %s, and perf-trampoline needs CPython 3.9 or newer" % version)
    status, stdout, _ = cli(interp, ["doctor", "--python", str(python)], work)
    assert status == 2
    assert "FAIL  %s cannot be profiled: it is CPython %s" % (python, version) in stdout


# Stand-ins for interpreters this machine does not have (no PyPy, no free-threaded build, no
# other architecture or C library can be installed here): Debian's CPython 3.11 with one
# answer changed, so the probe's own code runs and meets that answer. They test the refusal
# and its message, not the detection on a real PyPy & co.
FAKE = r'''#!/usr/bin/python3.11
import os, platform, sys, sysconfig
%s
if sys.argv[1:2] == ["-c"]:
    code, sys.argv = sys.argv[2], ["-c"] + sys.argv[3:]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__"})
'''

FAKES = {
    "pypy": ('platform.python_implementation = lambda: "PyPy"',
             "it is PyPy {version}, and perf-trampoline's module is a CPython extension"),
    "free-threaded": ('real = sysconfig.get_config_var\n'
                      'sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)',
                      "it is a free-threaded build of CPython {version}, and perf-trampoline supports GIL builds only; "
                      "fix: run the program with the GIL build (python{minor}, not python{minor}t)"),
    "aarch64": ('platform.machine = lambda: "aarch64"',
                "it runs aarch64 code (64-bit), and perf-trampoline's module here is built for x86_64 (64-bit)"),
    "musl": ('def confstr(name):\n    raise ValueError(name)\n'
             'os.confstr = confstr\nplatform.libc_ver = lambda *args: ("musl", "1.2.5")',
             "it uses the C library musl, and perf-trampoline's module here is linked against glibc"),
}


@pytest.mark.parametrize("kind", sorted(FAKES))
def test_record_and_doctor_refuse_where_our_module_cannot_work(kind, work):
    """Refusals for PyPy, a free-threaded build, another architecture, another C library: with
    a stand-in interpreter (FAKE above: this machine has none of them)."""
    if not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("the stand-ins run Debian's /usr/bin/python3.11, not on this machine")
    interp = host_cli()
    patch, reason = FAKES[kind]
    version = subprocess.run(["/usr/bin/python3.11", "-c", "import platform; print(platform.python_version())"],
                             capture_output=True).stdout.decode().strip()
    reason = reason.format(version=version, minor=version.rsplit(".", 1)[0])
    fake = work / ("python3-" + kind)
    fake.write_text(FAKE % patch)
    fake.chmod(0o755)
    (work / "prog.py").write_text(PROGRAM)
    before = sorted(p.name for p in work.iterdir())
    status, stdout, stderr = cli(interp, ["record", "-o", "out.svg", "--", str(fake), "prog.py", "1", "parent"], work)
    assert_refused(status, stdout, stderr, work, before, reason)
    status, stdout, _ = cli(interp, ["doctor", "--python", str(fake)], work)
    assert status == 2
    # The interpreter names itself by its sys.executable: the one behind the stand-in.
    assert "FAIL  /usr/bin/python3.11 cannot be profiled: %s" % reason in stdout


def test_doctor_says_which_way_record_takes(work):
    interp = host_cli()
    if not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("needs Debian's /usr/bin/python3.11 (without perf_trampoline)")
    status, stdout, _ = cli(interp, ["doctor", "--python", "/usr/bin/python3.11"], work)
    assert "perf-trampoline doctor (for /usr/bin/python3.11)" in stdout
    assert ("ok    /usr/bin/python3.11 does not have perf_trampoline: record brings this one along (%s)"
            % bring_along.PACKAGE) in stdout
    assert status < 2, stdout
    status, stdout, _ = cli(interp, ["doctor", "--python", interp.python[0]], work)
    assert "ok    perf_trampoline is importable by %s: record uses that installation" % interp.python[0] in stdout


def run_hooked(python, args, env, cwd):
    """``python args`` with our start-up directory first on PYTHONPATH, as record starts it."""
    with bring_along.start_up_dir() as path:
        full = bring_along.target_env(dict(os.environ, **env), path)
        return subprocess.run([python] + args, env=full, cwd=cwd, capture_output=True, timeout=120)


def test_the_users_failing_sitecustomize_fails_as_without_us(work):
    python = "/usr/bin/python3.11"
    if not os.path.exists(python):
        pytest.skip("needs Debian's /usr/bin/python3.11 (without perf_trampoline)")
    (work / "site").mkdir()
    (work / "site" / "sitecustomize.py").write_text("raise RuntimeError('the site is broken')\n")
    env = {"PYTHONPATH": str(work / "site")}
    show = ["-c", "import json, os, sys; print(json.dumps([sorted(m for m in sys.modules if 'customize' in m), "
                  "os.getpid()]))"]
    alone = subprocess.run([python] + show, env=dict(os.environ, **env), capture_output=True, cwd=work)
    hooked = run_hooked(python, show, dict(env, PERF_TRAMPOLINE="perf"), work)
    modules, pid = json.loads(hooked.stdout)
    for left in named_for(pid):
        os.unlink(left)
    assert alone.stderr.startswith(b"Error in sitecustomize")
    assert (hooked.returncode, modules, hooked.stderr) == (alone.returncode, json.loads(alone.stdout)[0], alone.stderr)


def test_without_children_the_environment_forgets_us(work):
    """PERF_TRAMPOLINE_CHILDREN=0: support for this process only, and children do not even find
    our start-up directory: PYTHONPATH is the user's again (or gone, when they had none)."""
    python = "/usr/bin/python3.11"
    if not os.path.exists(python):
        pytest.skip("needs Debian's /usr/bin/python3.11 (without perf_trampoline)")
    show = ["-c", "import os, perf_trampoline; print(perf_trampoline.is_active(), os.environ.get('PYTHONPATH'),"
                  " os.getpid())"]
    for users in ({}, {"PYTHONPATH": str(work)}):
        out = run_hooked(python, show, dict(users, PERF_TRAMPOLINE="perf", PERF_TRAMPOLINE_CHILDREN="0"), work)
        active, pythonpath, pid = out.stdout.decode().split()
        for path in named_for(int(pid)):
            os.unlink(path)
        assert (active, pythonpath) == ("True", users.get("PYTHONPATH", "None")), out.stderr


def test_the_start_up_directory_is_private_and_checked_before_use():
    with bring_along.start_up_dir() as path:
        hook = os.path.join(path, "sitecustomize.py")
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o700 and os.lstat(path).st_uid == os.geteuid()
        assert stat.S_IMODE(os.lstat(hook).st_mode) == 0o600 and stat.S_ISREG(os.lstat(hook).st_mode)
        assert os.listdir(path) == ["sitecustomize.py"]
        assert bring_along.target_env({"PYTHONPATH": "/a"}, path)["PYTHONPATH"] == path + os.pathsep + "/a"
        os.chmod(path, 0o755)  # someone else could now see in
        with pytest.raises(OSError, match="no longer a directory of ours with mode 0700"):
            bring_along.target_env({}, path)
        os.chmod(path, 0o700)
        os.rename(hook, hook + ".moved")
        os.symlink(hook + ".moved", hook)  # a link in its place is not followed, it is refused
        with pytest.raises(OSError, match="no longer a file of ours with mode 0600"):
            bring_along.target_env({}, path)
    assert not os.path.exists(path), "removed with everything in it"
    with pytest.raises(RuntimeError):
        with bring_along.start_up_dir() as path:
            raise RuntimeError("the block fails")
    assert not os.path.exists(path), "removed when the block fails too"


def test_record_brings_us_along_where_it_cannot_tell_the_python(work):
    """A shell runs the interpreter: record cannot probe it, brings us along all the same, and
    the hook in the interpreter (Debian's 3.11, without us) turns support on."""
    python = "/usr/bin/python3.11"
    if not os.path.exists(python):
        pytest.skip("needs Debian's /usr/bin/python3.11 (without perf_trampoline)")
    interp = host_cli()
    prog = str(work / "prog.py")
    (work / "prog.py").write_text(PROGRAM)
    before = our_site_dirs()
    status, stdout, stderr = cli(interp, ["record", "-o", "out.svg", "--", "/bin/sh", "-c",
                                          "%s %s 1 parent" % (python, prog)], work)
    for pid in (v["pid"] for v in views(stdout).values()):
        for path in named_for(pid):
            os.unlink(path)
    assert status == 0, stderr
    assert "cannot tell which Python /bin/sh runs: any Python in it that lacks perf_trampoline gets this one" in stderr
    stacks = folded_stacks(work / "out.folded")
    assert chain_share(stacks, prog) >= 0.9, stacks
    assert our_site_dirs() - before == set()


HIDDEN = [pathlib.Path("/usr/bin/python3.11"), PYENV / "3.13.0" / "bin" / "python3.13", PYENV / "3.9.18" / "bin" / "python3.9"]


@pytest.mark.parametrize("python", HIDDEN, ids=[str(p) for p in HIDDEN])
def test_start_up_is_as_without_us(python, work):
    """The interpreter's own sitecustomize (Debian's) or none at all (pyenv's): the program
    finds the same in sys.modules and sys.path as without us, and support is on."""
    if not python.exists():
        pytest.skip("%s is not on this machine" % python)
    show = ["-c", "import json, sys; print(json.dumps([sys.path, getattr(sys.modules.get('sitecustomize'), "
                  "'__file__', 'none'), 'perf_trampoline' in sys.modules and sys.modules['perf_trampoline'].is_active(),"
                  " __import__('os').getpid()]))"]
    alone = subprocess.run([str(python)] + show, capture_output=True, cwd=work)
    hooked = run_hooked(str(python), show, {"PERF_TRAMPOLINE": "perf"}, work)
    path, sitecustomize, active, pid = json.loads(hooked.stdout)
    for left in named_for(pid):
        os.unlink(left)
    expected_path, expected_sitecustomize, _, _ = json.loads(alone.stdout)
    assert (path, sitecustomize, active) == (expected_path, expected_sitecustomize, True), hooked.stderr
    assert hooked.stderr == alone.stderr == b""


@pytest.mark.parametrize("python", TOO_OLD, ids=[p.name for p in TOO_OLD])
def test_a_python_that_cannot_load_us_runs_without_support(python, work):
    """What a child of the recorded program meets when it runs an interpreter our module
    cannot work in: one line, then the program, the user's sitecustomize included."""
    if not python.exists():
        pytest.skip("%s is not on this machine" % python)
    env = user_start_up(work, (3, 9))
    show = ["-c", "import os; print(os.getpid())"]
    started = time.time()
    out = run_hooked(str(python), show, dict(env, PERF_TRAMPOLINE="perf"), work)
    pid = int(out.stdout)
    assert out.returncode == 0
    assert out.stderr.decode() == "perf_trampoline: %s is not profiled: it is CPython %s, and perf-trampoline needs " \
        "CPython 3.9 or newer; fix: run the program with CPython 3.9 or newer (a GIL build)\n" % (
            python, python.parent.parent.name)
    assert "sitecustomize %d" % pid in (work / "marks").read_text().split("\n")
    assert named_for(pid, since=started) == []


WORKERS = r'''
import json, multiprocessing, os, sys
def work(_):
    import perf_trampoline
    return os.getpid(), perf_trampoline.is_active(), sys.path
if __name__ == "__main__":
    seen = {}
    for method in ("spawn", "forkserver", "fork"):
        with multiprocessing.get_context(method).Pool(1) as pool:
            seen[method] = pool.map(work, [0])[0]
    # The helper processes write perf maps too (multiprocessing's own pids for them).
    from multiprocessing import forkserver, resource_tracker
    helpers = [forkserver._forkserver._forkserver_pid, resource_tracker._resource_tracker._pid]
    print(json.dumps([[os.getpid()] + helpers, sys.path, seen]))
'''


@pytest.mark.parametrize("python", HIDDEN, ids=[str(p) for p in HIDDEN])
def test_multiprocessing_workers_get_support(python, work):
    """Workers of every start method, in an interpreter without us: support on, and the
    sys.path their parent has (spawn and forkserver start new processes that find us
    through PYTHONPATH)."""
    if not python.exists():
        pytest.skip("%s is not on this machine" % python)
    (work / "workers.py").write_text(WORKERS)
    out = run_hooked(str(python), ["workers.py"], {"PERF_TRAMPOLINE": "perf"}, work)
    others, path, seen = json.loads(out.stdout)
    give_up = time.monotonic() + 30
    while any(os.path.exists("/proc/%d" % pid) for pid in others) and time.monotonic() < give_up:
        time.sleep(0.1)  # the helpers end once their parent has; then their maps are complete
    for pid in others + [pid for pid, _, _ in seen.values()]:
        for left in named_for(pid):
            os.unlink(left)
    assert {method: (active, worker_path == path) for method, (_, active, worker_path) in seen.items()} == {
        "spawn": (True, True), "forkserver": (True, True), "fork": (True, True)}, out.stderr
