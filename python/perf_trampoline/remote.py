"""The way into an unprepared CPython 3.14+: ``sys.remote_exec`` (PEP 768), called by the
target's own interpreter, runs a script that execs ``_injected.py`` in the target's main thread
at its next safe point."""

import json
import os
import subprocess

from . import handoff
from .target import Refusal, alive, may_trace, remote_debug_refusal, same_file

# The part of the hand-over run by the target's own interpreter (remote_exec must be called
# by the target's version): one JSON line saying what happened.
_HELPER = r"""
import json, sys
def out(**kw):
    print(json.dumps(kw))
if not sys.is_remote_debug_enabled():
    out(error="build")
    sys.exit(0)
if len(sys.argv) < 3:
    out(ok=True)
    sys.exit(0)
try:
    sys.remote_exec(int(sys.argv[1]), sys.argv[2])
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
    if not same_file("/proc/%d/root" % target.pid, "/"):
        raise Refusal("process %d runs in another root (a container or chroot): run perf-trampoline inside it, "
                      "or start the program with PERF_TRAMPOLINE=perf (or perf_jit) and record -p it from here"
                      % target.pid)


def send(target, args, directory):
    """Hands ``args`` to the target through sys.remote_exec (3.14+)."""
    if not same_file("/proc/%d/root%s" % (target.pid, directory), directory):
        raise Refusal("process %d does not see %s (another mount namespace): run perf-trampoline "
                      "in its namespace (nsenter -t %d -m)" % (target.pid, directory, target.pid))
    script = handoff.create(directory, "script.py", _script(dict(args, site=our_site())), target.file_owner,
                            {target.uid})
    handoff.check_file(script, {target.uid})  # again, just before the target reads it
    answer = helper(target, script)
    if not answer.get("ok"):
        raise Refusal(helper_refusal(target, answer))


def helper(target, script):
    """Runs remote_exec with the target's own interpreter (it must be of the target's version);
    without ``script``, only checks that its build allows remote debugging."""
    try:
        out = subprocess.run([target.exe, "-I", "-S", "-c", _HELPER, str(target.pid)] + ([script] if script else []),
                             capture_output=True, timeout=60)
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
