"""The way into an unprepared CPython 3.14+: ``sys.remote_exec`` (PEP 768), called by the
target's own interpreter, runs a script that execs ``_injected.py`` in the target's main thread
at its next safe point."""

import json
import os
import subprocess
import sys

from . import bring_along_hook, handoff, namespaces
from .target import Refusal, alive, libc_of, may_trace, remote_debug_refusal, same_file

# The part of the hand-over run by an interpreter of the target's version (remote_exec must
# be called by one): one JSON line saying what happened. Arguments: the target's pid, its own
# pid in its namespace or "" when it shares our mounts, the script (none: only check).
# remote_exec reads the target's /proc files and opens its executable by the path they give,
# and checks the script's path where it is called: for a target in a container it is called
# from inside the container's pid and mount namespace and root, by a child forked there (our
# interpreter is loaded already; nothing of the container's runs).
_HELPER = r"""
import json, os, sys
def out(**kw):
    print(json.dumps(kw), flush=True)
if not sys.is_remote_debug_enabled():
    out(error="build")
    sys.exit(0)
pid, own, script = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
if own:
    try:
        pidns, mntns = (os.open("/proc/%d/ns/%s" % (pid, ns), os.O_RDONLY) for ns in ("pid", "mnt"))
        os.setns(pidns, os.CLONE_NEWPID)  # for the child below
        child = os.fork()
        if child:
            sys.exit(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]))
        os.setns(mntns, os.CLONE_NEWNS)
        pid = int(own)
        os.chroot("/proc/%d/root" % pid)
        os.chdir("/")
    except OSError as e:
        out(error="other", text="entering process %s's namespaces: %s" % (pid, e))
        os._exit(0)
if not script:
    out(ok=True)
    os._exit(0)
try:
    sys.remote_exec(pid, script[0])
except PermissionError as e:
    out(error="permission", text=str(e))
except ProcessLookupError as e:
    out(error="gone", text=str(e))
except Exception as e:
    out(error="other", text="%s: %s" % (type(e).__name__, e))
else:
    out(ok=True)
"""


def our_site():
    """The directory our perf_trampoline package is installed in."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source(name):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), encoding="utf-8") as f:
        return f.read()


def _script(args):
    """The file remote_exec runs: bring_along_hook.py (its loader) and _injected.py, run in a
    namespace of their own (nothing is left in the program's __main__)."""
    return ("(lambda ns: [exec(compile(source, name, 'exec'), ns) for source, name in %r])"
            "({'__name__': '__perf_trampoline_attach__', 'ARGS': %r})\n"
            % ([(_source("bring_along_hook.py"), "<perf-trampoline loader>"),
                (_source("_injected.py"), "<perf-trampoline %s>" % args["op"])], args)).encode()


def check(target):
    """Refuses when sys.remote_exec cannot reach an unprepared ``target`` from here."""
    if target.version < (3, 14):
        raise Refusal("process %d runs CPython %s, which cannot be attached to without preparation: start it with "
                      "PERF_TRAMPOLINE=standby (3.9-3.13; 3.14+ needs none)" % (target.pid, target.version_text))
    may_trace(target)
    refusal = remote_debug_refusal(target)
    if refusal:
        raise Refusal(refusal)


def sees_our_site(target):
    site = our_site()
    return same_file("/proc/%d/root%s" % (target.pid, site), site)


def _copy_package(target, directory):
    """Our package, copied into ``directory`` (the hand-over's, which the target names
    ``seen``) for a target that cannot see our installation (a container): each file created
    exclusively, 0600, in a 0700 directory, given to the target's user as the rest."""
    ours, theirs = bring_along_hook.facts()["libc"], libc_of(target.pid)
    if theirs != ours:
        raise Refusal("process %d uses the C library %s (an Alpine-like image?), and perf-trampoline's module here "
                      "is linked against %s: install perf-trampoline in its image, or start it with "
                      "PERF_TRAMPOLINE=perf there" % (target.pid, theirs, ours))
    package = os.path.join(directory, bring_along_hook.NAME)
    os.mkdir(package, 0o700)  # never through a link, nor over anything
    if target.file_owner is not None and target.file_owner != os.geteuid():
        os.chown(package, target.file_owner, -1)
    source = os.path.dirname(os.path.abspath(__file__))
    for name in sorted(os.listdir(source)):
        if name.endswith((".py", ".so")):
            with open(os.path.join(source, name), "rb") as f:
                handoff.create(package, name, f.read(), target.file_owner, {target.uid})


def send(target, args, directory):
    """Hands ``args`` to the target through sys.remote_exec (3.14+); ``directory`` is the
    hand-over's as we reach it, ``args["dir"]`` the same as the target names it."""
    if not same_file("/proc/%d/root%s" % (target.pid, args["dir"]), directory):
        raise Refusal("process %d does not see %s (another mount namespace): run perf-trampoline "
                      "in its namespace (nsenter -t %d -m)" % (target.pid, args["dir"], target.pid))
    site = our_site()
    if not sees_our_site(target):
        _copy_package(target, directory)
        site = args["dir"]
    script = handoff.create(directory, "script.py", _script(dict(args, site=site)), target.file_owner,
                            {target.uid})
    handoff.check_file(script, {target.uid})  # again, just before the target reads it
    answer = helper(target, os.path.join(args["dir"], "script.py"))
    if not answer.get("ok"):
        raise Refusal(helper_refusal(target, answer))


def _interpreter(target):
    """The interpreter that calls remote_exec on ``target``: its own, or, where we cannot reach
    it (a container's), ours when it is of the same version. Never the container's file by
    its root: that would run the container's code with our privileges."""
    if same_file(target.exe, "/proc/%d/exe" % target.pid):
        return target.exe
    if sys.version_info[:2] == target.version:
        return sys.executable
    raise Refusal("process %d runs in another mount namespace (a container), and its Python %s is not ours: run "
                  "perf-trampoline with a Python %s (sys.remote_exec must be of the target's version)"
                  % (target.pid, target.version_text, target.version_text))


def helper(target, script):
    """Runs remote_exec with an interpreter of the target's version (``_interpreter``);
    without ``script``, only checks that its build allows remote debugging."""
    own = str(namespaces.own_pid(target.pid)) if namespaces.other_mounts(target.pid) else ""
    try:
        out = subprocess.run([_interpreter(target), "-I", "-S", "-c", _HELPER, str(target.pid), own]
                             + ([script] if script else []), capture_output=True, timeout=60)
    except OSError as e:
        raise Refusal("cannot run process %d's interpreter %s here (%s): run perf-trampoline where the target "
                      "runs" % (target.pid, target.exe, e.strerror)) from None
    try:
        return json.loads(out.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "other", "text": out.stderr.decode(errors="replace").strip()[-300:] or "no answer"}


def helper_refusal(target, answer):
    kind, text = answer.get("error"), answer.get("text", "")
    if kind == "build":
        return ("process %d's Python %s was built without remote debugging (--without-remote-debug): use "
                "PERF_TRAMPOLINE=standby at its start instead" % (target.pid, target.version_text))
    if kind == "gone":
        return "process %d exited during the attach" % target.pid
    if kind == "permission":
        return ("no permission to trace process %d (%s): run this as its user or as root, and check "
                "kernel.yama.ptrace_scope" % (target.pid, text))
    if "not enabled" in text:
        return ("process %d does not allow remote debugging (PYTHON_DISABLE_REMOTE_DEBUG or -X disable_remote_debug "
                "at its start): restart it without, or with PERF_TRAMPOLINE=standby" % target.pid)
    if not alive(target.pid):
        return "process %d exited during the attach" % target.pid
    return "sys.remote_exec on process %d failed: %s" % (target.pid, text)
