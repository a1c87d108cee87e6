"""The perf-trampoline command line: its options, and which command module runs each action
(``record``, ``report``, ``inject``, ``doctor``, ``clean``, ``attach``, ``detach``, ``fix-maps``)."""

import argparse
import os
import sys

from . import attach, formats, modes
from .clean import clean
from .console import Failure, say
from .doctor import doctor
from .fix_maps import fix_maps
from .inject import inject
from .live import record_pid
from .record import record
from .report import report


def _parser(prog):
    parser = argparse.ArgumentParser(
        prog=prog, description="Python functions in perf profiles: record a program into a flame graph.")
    sub = parser.add_subparsers(dest="action", metavar="{record,report,inject,doctor,clean,attach,detach,fix-maps}")
    sub.required = True

    def outputs(p):
        p.add_argument("-o", "--output", default=formats.DEFAULT_OUTPUT,
                       help="the output (default: %s); its extension chooses the format: %s; "
                            "an SVG brings its folded stacks along. With --format: the name the formats' "
                            "extensions are added to" % (formats.DEFAULT_OUTPUT, ", ".join(
                                "%s %s" % (ext, what) for ext, what in formats.FORMATS.values())))
        p.add_argument("--format", action="append", choices=list(formats.FORMATS), metavar="FORMAT",
                       help="write this format (%s; again for several): svg flame graph, folded stacks, "
                            "firefox (Firefox Profiler), speedscope, pprof" % "|".join(formats.FORMATS))
        p.add_argument("--native", action="store_true",
                       help="keep every native frame in the stacks (default: Python frames only)")
        p.add_argument("--top", type=int, default=10, metavar="N", help="rows of the top-functions tables")

    rec = sub.add_parser("record", help="run a command under perf record and draw its flame graph",
                         usage="%(prog)s [options] -- python app.py [args ...]")
    outputs(rec)
    rec.add_argument("--mode", choices=("auto", "unwind", "fp", "dwarf"), default="auto",
                     help="unwind: perf map + --call-graph dwarf, unwound by perf-trampoline (any interpreter, "
                          "native libraries included); fp: perf record -g with the perf map, for perf report "
                          "(needs an interpreter built with frame pointers); dwarf: jitdump + perf inject (of the "
                          "functions the samples reach), for perf report on any interpreter; auto (default): unwind")
    rec.add_argument("--freq", type=int, default=modes.DEFAULT_FREQ, metavar="HZ",
                     help="samples per second of each busy thread (default: %d; in unwind mode they are "
                          "unwound as perf writes them and none is stored, so a long run costs CPU, not disk)"
                          % modes.DEFAULT_FREQ)
    rec.add_argument("--stack-size", type=_stack_size, default=modes.DEFAULT_STACK_SIZE, metavar="BYTES",
                     help="unwind and dwarf modes: stack bytes copied per sample (default: %d, about 45 Python calls "
                          "deep; measured: 8192 and 16384 keep short chains but cut one 31 calls deep on 3.14; "
                          "at most %d)" % (modes.DEFAULT_STACK_SIZE, modes.MAX_STACK_SIZE))
    rec.add_argument("--duration", type=_seconds, metavar="S",
                     help="stop recording after S seconds (default: at Ctrl-C, or when the command or process "
                          "exits); a command (unwind mode) is then ended as Ctrl-C to perf-trampoline would (perf "
                          "sends it SIGTERM); with -p the process keeps running")
    rec.add_argument("--keep", action="store_true",
                     help="keep perf.data (as <output>.perf.data; in unwind mode a copy of perf's stream, "
                          "~33 KB per sample at 32 KiB), the perf maps and jitdumps; dwarf mode: also the injected "
                          "recording (<output>.perf.jit.data) and its jitted code (/tmp/jitted-<output>-*/)")
    rec.add_argument("command", nargs=argparse.REMAINDER, help="the program to profile, after --")
    attach.add_record_arguments(rec)

    rep = sub.add_parser("report", help="draw the flame graph of an existing perf.data")
    outputs(rep)
    rep.add_argument("data", nargs="?", default="perf.data", help="the recording (default: perf.data); "
                     "injected (as the inject command does) when it has jitdumps and is not injected yet, else "
                     "unwound by perf-trampoline when made with --call-graph dwarf")

    inj = sub.add_parser("inject", help="perf inject --jit, writing only the jitted functions the samples reach")
    inj.add_argument("-i", "--input", default="perf.data", help="the recording (default: perf.data)")
    inj.add_argument("-o", "--output", default="perf.jit.data", help="the injected recording (default: perf.jit.data)")
    inj.add_argument("--jitted-dir", metavar="DIR",
                     help="a new directory for the filtered jitdumps and the jitted-*.so files perf report reads "
                          "(default: a new /tmp/jitted-<output>-*; perf built with libdw unwinds through jitted "
                          "code only under /tmp/jitted-); nothing goes anywhere else, nor into ~/.debug")

    doc = sub.add_parser("doctor", help="check perf, permissions and the interpreter, and print the command to use")
    doc.add_argument("--python", default=sys.executable, help="the interpreter to check (default: this one)")
    doc.add_argument("--pid", type=int, help="also check whether attach / record -p can work on this process")

    cln = sub.add_parser("clean", help="remove our perf maps and jitdumps of processes that are gone "
                         "(in $PERF_TRAMPOLINE_DIR, else /tmp)")
    cln.add_argument("--dry-run", action="store_true", help="list them, remove nothing")

    for verb, text in (("attach", "turn support on in a running Python process"),
                       ("detach", "turn support off in a running Python process (removes our hook)")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("pid", type=int, help="the process")
        attach.add_arguments(p, backend=verb == "attach")

    fix = sub.add_parser("fix-maps", help="copy the perf maps and jitdumps of processes in containers to where "
                         "perf on the host looks (for your own perf record / perf report)")
    fix.add_argument("pids", type=int, nargs="+", metavar="PID", help="the processes, as the host numbers them "
                     "(their child processes too)")
    return parser


def _seconds(text):
    try:
        n = float(text)
    except ValueError:
        n = 0
    if not 0 < n < float("inf"):
        raise argparse.ArgumentTypeError("a number of seconds above 0")
    return n


def _stack_size(text):
    n = int(text)
    if not 1024 <= n <= modes.MAX_STACK_SIZE:
        raise argparse.ArgumentTypeError("between 1024 and %d" % modes.MAX_STACK_SIZE)
    return n - n % 8  # perf wants a multiple of 8


def _prog():
    if os.path.basename(sys.argv[0]) == "perf-trampoline":
        return "perf-trampoline"
    return "%s -m perf_trampoline" % os.path.basename(sys.executable)


ACTIONS = {"record": record, "report": report, "inject": inject, "doctor": doctor, "clean": clean,
           "fix-maps": fix_maps,
           "attach": lambda args, prog: attach.main_attach(args, say),
           "detach": lambda args, prog: attach.main_detach(args, say)}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = _prog()
    # Everything after "--" is the command, options and all.
    command = []
    if "--" in argv:
        at = argv.index("--")
        argv, command = argv[:at], argv[at + 1:]
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.action == "record":
        args.command = args.command + command
    elif command:
        parser.error("only record takes a command (after --)")
    try:
        if args.action in ("record", "report"):
            formats.outputs(args.output, args.format)  # an output we cannot write: say so before any work
        if args.action == "record" and args.pid is not None:
            return record_pid(args, prog)
        return ACTIONS[args.action](args, prog)
    except Failure as e:
        say(str(e))
        return e.status
    except attach.Refusal as e:
        say(str(e))
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130
