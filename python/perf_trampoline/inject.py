"""``perf-trampoline inject``: a drop-in for ``perf inject --jit`` that writes only the jitted
functions the recording's samples can reach, into one directory of the user's choosing."""

import os
import shutil

from . import machine
from .console import Failure, interrupt, on_signals, say
from .injection import JITTED_PREFIX, new_jitted_dir
from .injection import inject as inject_reached
from .session import Session


def inject(args, prog):
    data = os.path.abspath(args.input)
    if not os.path.isfile(data):
        raise Failure("%s: no such file (record one with `PERF_TRAMPOLINE=perf_jit perf record -k 1 "
                      "--call-graph dwarf -- python app.py`)" % args.input)
    out = os.path.abspath(args.output)
    if not os.path.isdir(os.path.dirname(out)):
        raise Failure("%s: its directory does not exist" % args.output)
    jitted = os.path.abspath(args.jitted_dir) if args.jitted_dir else None
    if jitted is not None and os.path.lexists(jitted):
        raise Failure("%s already exists: remove it, or name a new directory with --jitted-dir" % args.jitted_dir)
    session = Session(machine.find_perf()[0], out)
    try:
        with on_signals(interrupt):
            session.scan(data)
            if session.injected:
                raise Failure("%s is injected already (it maps jitted-*.so files): read it with perf report" % args.input)
            if not session.dumps:
                raise Failure("%s maps no jitdump: nothing to inject (record with PERF_TRAMPOLINE=perf_jit, "
                              "and perf record -k 1)" % args.input)
            if jitted is None:
                jitted = new_jitted_dir(os.path.basename(out))
            else:
                if not jitted.startswith(JITTED_PREFIX):
                    say("warning: %s is not under %s: perf built with libdw (Debian's perf 7) does not unwind "
                        "through jitted code elsewhere" % (jitted, JITTED_PREFIX))
                os.mkdir(jitted, 0o755)
            try:
                inject_reached(session.perf, data, out, jitted)
            except BaseException:
                shutil.rmtree(jitted, ignore_errors=True)
                raise
        say("wrote %s; its jitted code is in %s/ (keep both): perf report -i %s" % (out, jitted, args.output))
        return 0
    finally:
        session.close()
