"""Profiling an interpreter that does not have perf_trampoline installed: which way
``record`` takes for a probed interpreter (its own installation, ours brought along, or a
one-line refusal where our module cannot work), and the private start-up directory that
brings ours along for one process tree (bring_along_hook.py runs there)."""

import contextlib
import os
import shutil
import stat
import tempfile

from . import bring_along_hook

PACKAGE = os.path.dirname(os.path.abspath(__file__))
HOOK = os.path.join(PACKAGE, "bring_along_hook.py")

INSTALLED, BRING = "installed", "bring along"


def probe_args():
    """What interpreter.probe_python needs to tell whether an interpreter can load our module."""
    return [HOOK, PACKAGE]


def way(probe):
    """(INSTALLED or BRING, None), or (None, why not and the fix) for an interpreter probed
    by interpreter.probe_python. An interpreter the probe could not run is brought along to: the
    hook turns support on only where it can."""
    if "error" in probe:
        return BRING, None
    if "support_error" not in probe:
        return INSTALLED, None
    problem = _refusal(probe)
    if problem:
        return None, "%s cannot be profiled: %s" % (probe["executable"], problem)
    return BRING, None


def _refusal(probe):
    problem = bring_along_hook.refusal(probe)
    if problem:
        return problem
    mine = bring_along_hook.facts()
    fix = "fix: install perf-trampoline in it (pip install perf-trampoline)"
    if (probe["machine"], probe["bits"]) != (mine["machine"], mine["bits"]):
        return ("it runs %s code (%d-bit), and perf-trampoline's module here is built for %s (%d-bit); %s"
                % (probe["machine"], probe["bits"], mine["machine"], mine["bits"], fix))
    if probe["libc"] != mine["libc"]:
        return "it uses the C library %s, and perf-trampoline's module here is linked against %s; %s" % (
            probe["libc"], mine["libc"], fix)
    if "bring_error" in probe:
        return "it cannot load perf-trampoline's module from %s (%s); %s" % (PACKAGE, probe["bring_error"], fix)
    return None


def describe(probe):
    """doctor's line for an interpreter: (level, text)."""
    chosen, problem = way(probe)
    if chosen == INSTALLED:
        return "ok", "perf_trampoline is importable by %s: record uses that installation" % probe["executable"]
    if chosen == BRING:
        return "ok", ("%s does not have perf_trampoline: record brings this one along (%s), for the recorded "
                      "process tree only" % (probe["executable"], PACKAGE))
    return "FAIL", problem


def untold(program):
    """record's note when it cannot tell which Python ``program`` runs."""
    return ("cannot tell which Python %s runs: any Python in it that lacks perf_trampoline gets this one (%s) "
            "where our module can work" % (program, PACKAGE))


def _private_dir_error(path):
    """None if ``path`` is still the directory we made (ours, 0700, not a link) holding only
    our start-up file (ours, 0600, a regular file), else what is wrong."""
    try:
        st = os.lstat(path)
        hook = os.lstat(os.path.join(path, "sitecustomize.py"))
    except OSError as e:
        return str(e)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or stat.S_IMODE(st.st_mode) != 0o700:
        return "%s is no longer a directory of ours with mode 0700" % path
    if not stat.S_ISREG(hook.st_mode) or hook.st_uid != os.geteuid() or stat.S_IMODE(hook.st_mode) != 0o600:
        return "%s/sitecustomize.py is no longer a file of ours with mode 0600" % path
    return None


@contextlib.contextmanager
def start_up_dir():
    """A private directory (made exclusively, 0700, under the temporary directory) holding
    ``sitecustomize.py`` that brings our package along; removed with everything in it
    (the target's bytecode of it) when the block ends."""
    path = os.path.abspath(tempfile.mkdtemp(prefix="perf-trampoline-site-"))
    try:
        with open(HOOK, encoding="utf-8") as f:
            text = f.read() + "\n\nstep_aside(%r)\n" % PACKAGE
        fd = os.open(os.path.join(path, "sitecustomize.py"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def environment(chosen, env):
    """The target's environment, for the block, on the way ``chosen``: ``env`` itself for an
    installed copy; brought along, with a start_up_dir first on PYTHONPATH."""
    if chosen == INSTALLED:
        yield env
        return
    with start_up_dir() as path:
        yield target_env(env, path)


def target_env(env, path):
    """``env`` with ``path`` (from start_up_dir) first on PYTHONPATH; raises OSError when the
    directory is no longer what we made (checked again right before the target starts)."""
    problem = _private_dir_error(path)
    if problem:
        raise OSError(problem)
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join([path] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env
