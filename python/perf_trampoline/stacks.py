"""Reads ``perf script`` output: each sample's frames, and the Python call chains in them.

    perf script -i perf.data | python -m perf_trampoline.stacks [--top N]

prints the most frequent Python call chains (innermost first) with their share of samples.
"""

import collections
import sys


def samples(perf_script_text):
    """Yields (header, [symbol, ...] innermost first) for each sample of ``perf script``."""
    for block in perf_script_text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        frames = []
        for line in lines[1:]:
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            # "<addr> <symbol>+0x<off> (<dso>)": the symbol may contain spaces, the dso is last.
            sym = parts[1].rsplit(" (", 1)[0]
            plus = sym.rfind("+0x")
            frames.append(sym[:plus] if plus > 0 else sym)
        yield lines[0], frames


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
