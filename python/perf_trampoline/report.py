"""``perf-trampoline report``: draws an existing recording, injecting or unwinding it as the
way it was made needs."""

import os

from . import machine, unwound
from .console import Failure, interrupt, on_signals, say
from .session import Session


def report(args, prog):
    data = os.path.abspath(args.data)
    if not os.path.isfile(data):
        raise Failure("%s: no such file (record one with `%s record -- python app.py`)" % (args.data, prog))
    session = Session(machine.find_perf()[0], args.output, args.format)
    try:
        with on_signals(interrupt):
            try:
                session.scan(data)
                if session.dumps and not session.injected:
                    missing = [d for d in session.dumps if not os.path.exists(d)]
                    if missing:
                        say("warning: jitdumps gone, their functions stay unnamed: %s" % ", ".join(missing))
                if not (session.dumps or session.injected) and _has_user_stacks(data):
                    profile = session.unwind(data, args.native)
                else:
                    profile = session.read(session.inject(data), args.native)
                return 0 if session.write(profile, os.path.basename(data), args.top) else 1
            except KeyboardInterrupt:
                say("interrupted")
                return 130
    finally:
        session.close()


def _has_user_stacks(data):
    try:
        return unwound.has_user_stacks(data)
    except ValueError as e:
        raise Failure(str(e)) from None
