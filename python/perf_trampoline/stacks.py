"""Reads ``perf script`` output: each sample's thread, time and frames (into the samples model
every output is written from, ``_native.Samples``), the Python call chains in them, and the
folded stacks and per-function counts of flame graphs and the top table.

    perf script -i perf.data | python -m perf_trampoline.stacks [--top N]

prints the most frequent Python call chains (innermost first) with their share of samples.
"""

import collections
import re
import sys

# The fields a sample's header needs, and the header `perf script -F` + FIELDS prints:
# "comm pid/tid[ seconds.fraction:[ period]]"; comm may hold spaces.
FIELDS = "comm,pid,tid,time,period,ip,sym,dso"
_HEADER = re.compile(r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)/(?P<tid>-?\d+)"
                     r"(?:\s+(?P<sec>\d+)\.(?P<frac>\d+):(?:\s+(?P<period>\d+))?)?\s*$")


def _frame(line):
    """(symbol, dso) of one callchain line, "<addr> <symbol>[+0x<off>] (<dso>)"; None if the
    line is not one. The symbol may contain spaces, the dso is last."""
    parts = line.split(None, 1)
    if len(parts) < 2:
        return None
    sym, found, dso = parts[1].rstrip("\r\n").rpartition(" (")
    if not found:
        sym, dso = dso, ""
    plus = sym.rfind("+0x")
    return (sym[:plus] if plus > 0 else sym), dso[:-1] if dso.endswith(")") else dso


def _records(lines):
    """(header, [(symbol, dso), ...] innermost first) for each record of ``perf script``."""
    header, frames = None, []
    # The same return addresses come back sample after sample: each distinct line is parsed once.
    parsed = {}
    for line in lines:
        if line.startswith("\t"):  # perf script indents callchain lines with a tab, only them
            try:
                frame = parsed[line]
            except KeyError:
                frame = parsed[line] = _frame(line)
            if frame is not None and header is not None:
                frames.append(frame)
            continue
        if header is not None:
            yield header, frames
        header, frames = line.rstrip("\r\n") or None, []
    if header is not None:
        yield header, frames


def records(lines):
    """Yields (header, [symbol, ...] innermost first) for each record of ``perf script``
    output given as lines: samples, and the one-line side-band events that
    ``--show-task-events`` / ``--show-mmap-events`` put between them (with no frames)."""
    for header, frames in _records(lines):
        yield header, [sym for sym, _ in frames]


def read_perf_script(lines, into=None):
    """The ``_native.Samples`` of every sample of ``perf script -F FIELDS`` output (added to
    ``into`` when given). Without time or period fields, samples get time 0 and period 1."""
    from ._native import Samples

    into = Samples() if into is None else into
    for header, frames in _records(lines):
        m = _HEADER.match(header)
        if m and "PERF_RECORD_" not in header:
            time = int(m.group("sec")) * 10**9 + int(m.group("frac").ljust(9, "0")[:9]) if m.group("sec") else 0
            into.add_perf_script(int(m.group("pid")), int(m.group("tid")), m.group("comm").replace(";", ":"),
                                 time, int(m.group("period") or 1), frames)
    return into


def samples(perf_script_text):
    """Yields (header, [symbol, ...] innermost first) for each sample of ``perf script``."""
    for header, frames in records(perf_script_text.splitlines()):
        if "PERF_RECORD_" not in header:
            yield header, frames


def python_chain(frames):
    """The ``py::`` frames of one sample, innermost first, as ``(qualname, filename)``."""
    chain = []
    for f in frames:
        if f.startswith("py::"):
            qual, _, filename = f[4:].partition(":")
            chain.append((qual, filename))
    return chain


def chain_share(perf_script_text, expected, filename=None):
    """(samples whose Python chain starts with the ``expected`` qualnames, all samples);
    with ``filename``, those frames must also all come from that file."""
    expected = list(expected)
    hits = total = 0
    for _, frames in samples(perf_script_text):
        total += 1
        chain = python_chain(frames)[: len(expected)]
        if [q for q, _ in chain] == expected and (
                filename is None or all(f == filename for _, f in chain)):
            hits += 1
    return hits, total


class Profile:
    """Samples folded into flame-graph stacks (``comm;outermost;...;innermost``), with each
    Python function's self samples (it was the innermost Python frame: the C code it called
    counts as its own) and total samples (it was anywhere on the stack).

    By default a stack keeps only its Python frames; one without any (interpreter start-up,
    threads outside Python) becomes ``[no Python frame];<innermost function>``.
    ``native=True`` keeps every frame.
    """

    def __init__(self, native=False):
        self.native = native
        self.stacks = collections.Counter()
        self.own = collections.Counter()
        self.total = collections.Counter()
        self.samples = 0
        self.in_python = 0
        self.model = None  # the _native.Samples counted, for the formats written from it

    def add(self, comm, symbols, count=1):
        """Counts ``count`` samples of thread ``comm`` whose frames are ``symbols``, innermost first."""
        self.samples += count
        py = [s for s in symbols if s.startswith("py::")]
        if py:
            self.in_python += count
            self.own[py[0]] += count
            for name in set(py):
                self.total[name] += count
        if self.native:
            shown = symbols
        elif py:
            shown = py
        else:
            shown = symbols[:1] + ["[no Python frame]"]
        # ";" separates frames in the folded format; C++ and file names may contain it.
        self.stacks[";".join([comm] + [s.replace(";", ":") for s in reversed(shown)])] += count

    def add_perf_script(self, lines):
        """Counts every sample of ``perf script -F FIELDS`` output."""
        self.add_samples(read_perf_script(lines))

    def add_samples(self, samples):
        """Counts every sample of a ``_native.Samples``."""
        self.model = samples
        for thread, frames, count in samples.folded():
            self.add(thread, frames, count)

    def folded(self):
        return "".join("%s %d\n" % (stack, n) for stack, n in sorted(self.stacks.items()))

    def table(self, top=10):
        """The ``top`` Python functions by self samples, then by total samples, as text."""
        if not self.samples:
            return "no samples\n"
        out = ["%d samples, %d of them in Python code (%.1f%%)\n"
               % (self.samples, self.in_python, 100.0 * self.in_python / self.samples)]
        for title, key in (("self", self.own), ("total", self.total)):
            out.append("\ntop Python functions by %s samples:\n" % title)
            out.append("  %13s  %13s  function\n" % ("self", "total"))
            ranked = sorted(key, key=lambda name: (-key[name], name))[:top]
            for name in ranked:
                out.append("  %6d %5.1f%%  %6d %5.1f%%  %s\n" % (
                    self.own[name], 100.0 * self.own[name] / self.samples,
                    self.total[name], 100.0 * self.total[name] / self.samples, name))
            if not ranked:
                out.append("  (none: no sample had a py:: frame)\n")
        return "".join(out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    top = int(argv[argv.index("--top") + 1]) if "--top" in argv else 5
    counts = collections.Counter()
    total = 0
    for _, frames in samples(sys.stdin.read()):
        total += 1
        counts[" < ".join("py::" + q for q, _ in python_chain(frames)) or "(no Python frame)"] += 1
    print("%d samples; most frequent Python call chains (innermost first):" % total)
    for chain, n in counts.most_common(top):
        print("  %5.1f%%  %s" % (100.0 * n / max(total, 1), chain))


if __name__ == "__main__":
    main()
