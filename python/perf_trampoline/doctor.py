"""``perf-trampoline doctor``: checks everything a recording needs here, one line per check with
its fix, then the command lines to use."""

import os
import shlex
import shutil

from . import _native, attach, bring_along, interpreter, jit, leftovers, machine, modes


class Report:
    """Check results printed as they come: "ok" or "note", "warn" (record works, with a
    caveat) or "FAIL" (record cannot work until fixed), each with its explanation and fix."""

    LEVELS = {"ok": 0, "note": 0, "warn": 1, "FAIL": 2}

    def __init__(self):
        self.worst = 0

    def add(self, level, text, details=()):
        self.worst = max(self.worst, self.LEVELS[level])
        print("  %-4s  %s" % (level, text))
        for line in details:
            print("        %s" % line)


def _note_leftovers(report, prog):
    """Notes our perf maps and jitdumps whose process is gone, and how to remove them."""
    directory = leftovers.output_dir()
    try:
        found = leftovers.find(directory)
    except OSError:
        return  # the directory check says what is wrong with it
    if found:
        maps = sum(path.endswith(".map") for path, _, _ in found)
        report.add("note", "%s holds %d perf maps and %d jitdumps of processes that are gone (%d bytes)"
                   % (directory, maps, len(found) - maps, sum(size for _, _, size in found)),
                   ["remove them: %s clean   (list them: %s clean --dry-run)" % (prog, prog)])


def doctor(args, prog):
    """Checks everything ``record`` needs for ``args.python``, prints each result with its fix and
    the command lines to use; returns 0 (healthy), 1 (works, with warnings) or 2 (broken)."""
    python = args.python
    report = Report()
    print("perf-trampoline doctor (for %s)" % python)
    probe = interpreter.probe_python(python, os.environ)
    if "error" in probe:
        report.add("FAIL", "cannot run %s: %s" % (python, probe["error"]))
        return 2
    mode, _ = modes.choose_mode("auto", probe)

    perf = shutil.which("perf")
    if perf is None:
        report.add("FAIL", "perf is not on PATH", [machine.INSTALL_PERF])
    else:
        version, text = machine.perf_version(perf)
        if version is None:
            report.add("FAIL", "%s does not run: %s" % (perf, text), [machine.INSTALL_PERF])
            perf = None
        elif mode.name == "dwarf" and version < machine.PERF_FOR_JITDUMP:
            report.add("warn", "%s: %s" % (perf, machine.old_perf_warning(text)))
        else:
            report.add("ok", "%s: %s (the jitdump + DWARF mode needs %d.%d or newer)" % ((perf, text) + machine.PERF_FOR_JITDUMP))
    if perf is not None:
        complaint = machine.probe_recording(perf)
        if complaint is None:
            report.add("ok", "perf may record here (a test `perf record -g -- true` worked); %s"
                       % machine.permission_help()[0])
        else:
            report.add("FAIL", "perf may not record here: %s" % complaint.splitlines()[-1],
                       complaint.splitlines()[:-1][-6:] + machine.permission_help())

    if probe["frame_pointers"]:
        report.add("ok", "%s (%s) has frame pointers: --mode fp works too (perf record -g, then perf report)"
                   % (probe["executable"], probe["version"]))
    else:
        report.add("note", "%s (%s) was built without frame pointers: record's default mode does not need "
                   "them; for perf report itself use --mode dwarf, not --mode fp"
                   % (probe["executable"], probe["version"]))
    report.add(*bring_along.describe(probe))
    warning = interpreter.hook_warning(probe)
    if warning:
        report.add("warn", warning)
    else:
        report.add("ok", "no other frame-evaluation hook at start-up")
    jit_state = jit.doctor_lines(probe, modes.MODES)
    if jit_state:
        report.add(*jit_state)

    if mode.name == "dwarf":
        directory, what = leftovers.output_dir(), "jitdump (it must be mapped executable)"
        fix = "fix: %s=<a directory on a file system mounted without noexec>" % _native.OUTPUT_DIR_VARIABLE
    else:
        directory, what = _native.PERF_MAP_DIR, "perf map"
        fix = "fix: make it writable for this user (perf reads perf maps from there only)"
    problem = machine.directory_error(directory, executable=mode.name == "dwarf")
    if problem is None:
        report.add("ok", "%s can hold the %s" % (directory, what))
    else:
        report.add("FAIL", "%s cannot hold the %s: %s" % (directory, what, problem), [fix])

    _note_leftovers(report, prog)

    depth = machine.read_int("/proc/sys/kernel/perf_event_max_stack")
    if mode.name == "fp" and depth is not None and depth < 512:
        # About 5 frames a Python call: its trampoline and the interpreter's frames around it.
        report.add("note", "kernel.perf_event_max_stack is %d: stacks deeper than about %d Python calls are cut"
                   % (depth, depth // 5), ["for deeper ones: `sudo sysctl kernel.perf_event_max_stack=1024`"])

    if args.pid is not None:
        print("attaching to process %d (attach, detach, record -p):" % args.pid)
        for level, text in attach.reachability(args.pid):
            report.add(level, text)

    example = [probe["executable"], "app.py"]
    print("\nto profile a program (%s mode: %s):\n  %s record -o flamegraph.svg -- %s"
          % (mode.name, mode.summary, prog, " ".join(shlex.quote(w) for w in example)))
    print("or record by hand and draw it with perf-trampoline:")
    for line in modes.perf_commands(mode, modes.DEFAULT_FREQ, modes.DEFAULT_STACK_SIZE, example):
        print("  " + line)
    for_perf = modes.MODES["fp" if probe["frame_pointers"] else "dwarf"]
    print("\nwhich mode when (record --mode MODE):\n" + modes.MODE_ADVICE)
    print("for perf report itself (%s mode: %s):" % (for_perf.name, for_perf.summary))
    for line in modes.perf_commands(for_perf, modes.DEFAULT_FREQ, modes.DEFAULT_STACK_SIZE, example):
        print("  " + line)
    print("\n" + ("healthy" if report.worst == 0 else
                  "works, see the warnings" if report.worst == 1 else "not ready: fix the FAIL lines"))
    return report.worst
