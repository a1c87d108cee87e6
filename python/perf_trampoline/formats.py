"""The files ``record`` and ``report`` write: the formats chosen with ``--format`` or by the
extension of ``-o``, and where each goes."""

from .console import Failure

# format: (extension, what it is for); the order is the order they are written and listed.
FORMATS = {
    "svg": (".svg", "flame graph"),
    "folded": (".folded", "folded stacks"),
    "firefox": (".json.gz", "Firefox Profiler"),
    "speedscope": (".speedscope.json", "speedscope"),
    "pprof": (".pb.gz", "pprof"),
}
DEFAULT_OUTPUT = "flamegraph.svg"


def _by_extension(path):
    """The format whose extension ``path`` has (the longest that matches), or None."""
    found = [(len(ext), name) for name, (ext, _) in FORMATS.items() if path.endswith(ext)]
    return max(found)[1] if found else None


def stem(output):
    """``output`` less its format's extension (kept recordings are named after it)."""
    known = _by_extension(output)
    return output[: -len(FORMATS[known][0])] if known else output


def outputs(output, formats):
    """[(format, path), ...] for ``-o output`` and ``--format``s (a list, maybe empty).

    Without ``--format`` the format is the extension's, and an SVG brings its folded stacks
    along (``x.svg`` and ``x.folded``); an extension we cannot write is a Failure. With it,
    each format goes to ``output`` (less a known extension) plus that format's extension.
    """
    chosen = list(dict.fromkeys(formats or []))
    known = _by_extension(output)
    if not chosen:
        if known is None:
            raise Failure("%s: no format has this extension; name the output %s, or choose with --format %s"
                          % (output, ", ".join("*" + ext for ext, _ in FORMATS.values()), "|".join(FORMATS)))
        chosen = ["svg", "folded"] if known == "svg" else [known]
    return [(name, stem(output) + FORMATS[name][0]) for name in FORMATS if name in chosen]


def describe(name, path):
    return "%s (%s)" % (path, FORMATS[name][1])
