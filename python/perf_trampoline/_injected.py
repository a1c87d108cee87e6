"""Runs inside the process ``attach``/``detach`` works on: handed to it as source, with
``ARGS``, by remote.py, or called by its standby thread (standby.py). Turns perf-trampoline
on or off there and writes what happened to a result file. Imports nothing from the package
at module level."""

import json
import os
import sys


def _load(site):
    """The target's perf_trampoline (its extension module, or the package, which has the same
    functions): the one it loaded already (support has one owner per process), else ours, from
    our own installation's directory in ``site``. Only remote.py's script gets that far (standby runs inside our package), and it puts bring_along_hook's
    ``refusal`` and ``load`` beside this code: nothing goes on the target's sys.path, and no
    bytecode is written into our installation."""
    native = sys.modules.get("perf_trampoline._native")
    if native is not None:  # loaded with the package, or alone by the start-up switches
        return native
    module = sys.modules.get("perf_trampoline")
    if module is not None:  # ours would have loaded its _native first
        raise ImportError("the program has a module of its own named perf_trampoline (%s)"
                          % getattr(module, "__file__", "?"))
    problem = refusal()  # noqa: F821
    if problem:
        raise ImportError(problem)
    return load(os.path.join(site, "perf_trampoline"))  # noqa: F821


def _backend(module):
    """The backend the process's support writes, from its outputs' names."""
    outputs = [os.path.basename(p) for p in module._state().get("outputs", ())]
    names = [b for b, suffix in (("perf", ".map"), ("perf_jit", ".dump")) if any(o.endswith(suffix) for o in outputs)]
    return ",".join(names) or "?"


def _run(args):
    if args["op"] == "detach" and "perf_trampoline._native" not in sys.modules:
        return {"ok": True, "was_active": False}
    module = _load(args["site"])
    active = module.is_active()
    if args["op"] == "attach":
        if active:
            return {"ok": True, "already": True, "backend": _backend(module)}
        # children=False: support stays in this process (a forked worker turns it off before
        # writing anything), so a detach here leaves no process of the tree with it on.
        module.activate(args["backend"], children=False)
        return {"ok": True, "already": False, "backend": _backend(module)}
    module.deactivate()
    return {"ok": True, "was_active": active}


def _answer(directory, result):
    tmp = os.path.join(directory, "result.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(directory, "result"))


def main(args):
    directory = args["dir"]
    try:
        # The attacher cancels a request it gave up waiting for by renaming it first: whoever
        # renames it wins, so a late run never turns support on behind the user's back.
        os.rename(os.path.join(directory, "request"), os.path.join(directory, "taken"))
    except OSError:
        # Cancelled: the attacher left the directory for this late run to remove.
        try:
            for name in os.listdir(directory):
                os.unlink(os.path.join(directory, name))
            os.rmdir(directory)
        except OSError:
            pass
        return
    try:
        result = _run(args)
    except Exception as e:  # the program must go on whatever happens here
        result = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
    result["pid"] = os.getpid()
    result["version"] = "%d.%d" % sys.version_info[:2]
    _answer(directory, result)


if __name__ == "__perf_trampoline_attach__":  # run by attach.py's script, never imported
    main(ARGS)  # noqa: F821 (given by attach.py with this source)
