"""``python -m perf_trampoline [--backend B] [--no-children] script.py [args]``: run a script with
perf support on, in every process it starts too (``--no-children``: in this one only).

Arguments, ``sys.argv``, ``__main__`` and the exit status behave as with ``python script.py``;
``-m module`` runs a module the way ``python -m module`` does.
"""

import builtins
import importlib.machinery
import os
import runpy
import sys
import types

USAGE = ("usage: python -m perf_trampoline [--backend BACKEND] [--no-children] (script.py | -m module) [args ...]\n"
         "       python -m perf_trampoline (record | report | inject | doctor | clean | attach | detach | fix-maps) ...   (see perf-trampoline --help)")
COMMANDS = ("record", "report", "inject", "doctor", "clean", "attach", "detach", "fix-maps")


def _parse(argv):
    from . import BACKENDS

    backend = "perf"
    children = True
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-h", "--help"):
            print(USAGE + "\nbackends: " + ", ".join(BACKENDS))
            sys.exit(0)
        if a == "--backend" or a.startswith("--backend="):
            if "=" in a:
                backend = a.split("=", 1)[1]
            elif i + 1 < len(argv):
                i += 1
                backend = argv[i]
            else:
                sys.exit("perf_trampoline: --backend needs a value; accepted: " + ", ".join(BACKENDS))
            i += 1
            continue
        if a == "--no-children":
            children = False
            i += 1
            continue
        if a == "-m":
            if i + 1 >= len(argv):
                sys.exit(USAGE)
            return backend, children, ("module", argv[i + 1]), argv[i + 1:]
        if a == "--":
            i += 1
            continue
        if a.startswith("-"):
            sys.exit("perf_trampoline: unknown option %r\n%s" % (a, USAGE))
        return backend, children, ("path", a), argv[i:]
    sys.exit(USAGE)


def _is_zip(path):
    # By its magic number, as python does: importing zipfile would cost ~10 ms at start-up.
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _load_script(path):
    """Prepares a source file to run as python itself runs it: as the real ``__main__``
    module, compiled under its absolute path (3.9+), ``sys.argv[0]`` left as typed (which
    ``runpy.run_path`` would overwrite). Returns the code and the module's namespace."""
    try:
        with open(path, "rb") as f:
            source = f.read()
    except OSError as e:
        sys.stderr.write("%s: can't open file %r: [Errno %d] %s\n"
                         % (os.path.basename(sys.executable), path, e.errno, e.strerror))
        sys.exit(2)
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__cached__ = None
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", path)
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    return compile(source, path, "exec", dont_inherit=True), main.__dict__


def main(argv=None):
    from . import activate
    from ._native import _jit_may_run

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        from . import cli

        sys.exit(cli.main(argv))
    backend, children, (kind, target), new_argv = _parse(argv)
    if _jit_may_run():
        from . import jit

        jit.turn_off_if_wrong(backend)
    target_file = code = None
    try:
        # All of ours runs before support is on: the program's own frames are the first to
        # get trampolines, so none of the runner's shows in its profile.
        if kind == "path":
            target_file = os.path.abspath(target)
            sys.path[0] = os.path.dirname(target_file)
            if not (os.path.isdir(target) or _is_zip(target)):
                code, namespace = _load_script(target_file)
        else:
            sys.path[0] = os.getcwd()
        sys.argv[:] = new_argv
        try:
            activate(backend, children=children)
        except Exception as e:  # the script must run even when support cannot be turned on
            sys.stderr.write("perf_trampoline: %s (running without perf support)\n" % (e,))
        if code is not None:
            # From this frame, which began before activation and so has no trampoline.
            exec(code, namespace)
        elif kind == "path":
            runpy.run_path(target, run_name="__main__")  # a directory or zip: runs its __main__.py
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    except SystemExit:
        raise
    except BaseException as e:
        # Show the traceback from the script's first frame on, without runpy's and ours.
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != target_file:
            tb = tb.tb_next
        e.__traceback__ = tb or e.__traceback__  # newer excepthooks read it from here
        sys.excepthook(type(e), e, e.__traceback__)
        if isinstance(e, KeyboardInterrupt):
            # Die of SIGINT, as python itself does, so the parent sees the same status.
            import signal

            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        sys.exit(1)


if __name__ == "__main__":
    main()
