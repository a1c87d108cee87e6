"""The formats record writes besides the SVG, read by their real consumers on one recording of
the seed example: pprof by the pprof tool, speedscope by speedscope in headless Chromium,
Firefox's processed profile checked table by table; the sample counts per Python function
agree across all of them. Also: formats chosen by -o's extension, and one that is unknown."""

import collections
import gzip
import http.server
import json
import os
import re
import subprocess
import threading

import pytest
from conftest import INTERPRETERS, ROOT, copy_example
from test_cli import ARTEFACTS, cli, folded_stacks

TOOLS = ROOT / "target" / "tools"
PPROF = TOOLS / "pprof"
NODE_MODULES = TOOLS / "npm" / "node_modules"
SEED_FUNCTIONS = ("foo", "bar", "baz")

# One interpreter is enough: the formats are written from the same model whatever recorded it.
HOST = [i for i in INTERPRETERS if i.name == "host-3.11"]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """``record --format`` every format of the seed example, once: (work dir, stem, stdout)."""
    if not HOST:
        pytest.skip("host-3.11 missing: run scripts/test-interpreters.sh")
    interp = HOST[0]
    work = tmp_path_factory.mktemp("formats")
    work.chmod(0o755)
    seed = copy_example("seed_example.py", work)
    formats = ["svg", "folded", "firefox", "speedscope", "pprof"]
    status, stdout, stderr = cli(interp, ["record", "-o", "seed"] + [a for f in formats for a in ("--format", f)]
                                 + ["--"] + interp.python + [str(seed), "15000000"], work)
    assert status == 0, stderr
    return work, work / "seed", stdout


def seed_name(name, work):
    """``py::foo`` for ``py::foo:<work>/seed_example.py`` (and for pprof's ``py::foo``), else None."""
    m = re.fullmatch(r"py::(\w+)(?::(.*))?", name)
    if m and m.group(1) in SEED_FUNCTIONS and m.group(2) in (None, str(work / "seed_example.py")):
        return "py::" + m.group(1)
    return None


def totals(stacks, work):
    """{py::name: samples with it anywhere in the stack} for (frame names, samples) pairs."""
    out = collections.Counter()
    for frames, n in stacks:
        for name in {seed_name(f, work) for f in frames} - {None}:
            out[name] += n
    return out


def python_order(frames, work):
    """The seed's Python frames of one stack, innermost first, from frames innermost first."""
    return [n for n in (seed_name(f, work) for f in frames) if n]


def test_all_formats_written(recording):
    work, stem, stdout = recording
    names = sorted(p.name for p in work.iterdir())
    assert names == ["seed.folded", "seed.json.gz", "seed.pb.gz", "seed.speedscope.json", "seed.svg",
                     "seed_example.py"]
    assert "top Python functions by self samples" in stdout


def pprof(*args):
    if not PPROF.exists():
        pytest.skip("no %s: run scripts/install-deps.sh (builds it from Debian's google/pprof sources)" % PPROF)
    out = subprocess.run([str(PPROF), "-symbolize=none"] + list(args), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out.stdout.decode()


def pprof_counts(stem):
    """{function: cum samples} from ``pprof -top`` of the samples/count type."""
    out = pprof("-top", "-sample_index=samples", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0",
                str(stem) + ".pb.gz")
    counts = {}
    for line in out.splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[1].endswith("%") and parts[4].endswith("%"):
            counts[parts[5]] = int(parts[3])
    return counts


def test_pprof_tool_reads_it_and_nests_foo_bar_baz(recording):
    work, stem, _ = recording
    traces = pprof("-traces", "-sample_index=samples", str(stem) + ".pb.gz")
    # Each trace: lines of "[value]  function", innermost first, between lines of dashes.
    chains = collections.Counter()
    for block in traces.split("-----------+-------------------------------------------------------")[1:]:
        frames, value = [], 0
        for line in block.strip("\n").splitlines():
            m = re.match(r"^\s*(\d+)?\s+(\S.*)$", line)
            if not m:
                continue
            value = int(m.group(1)) if m.group(1) else value
            frames.append(m.group(2).strip())
        chains[tuple(python_order(frames, work))] += value
    total = sum(chains.values())
    assert total > 300, traces[:2000]
    nested = chains[("py::foo", "py::bar", "py::baz")]
    assert nested >= 0.9 * total, chains.most_common(5)
    counts = pprof_counts(stem)
    assert counts["py::foo"] >= 0.9 * total and counts["py::baz"] >= counts["py::foo"], counts


def test_speedscope_in_chromium(recording):
    work, stem, _ = recording
    if not os.path.exists("/usr/bin/chromium") or not (NODE_MODULES / "speedscope").exists():
        pytest.skip("no /usr/bin/chromium or speedscope under %s: run scripts/install-deps.sh" % NODE_MODULES)
    site = work / "site"
    site.mkdir()
    (site / "app").symlink_to(NODE_MODULES / "speedscope" / "dist" / "release")
    (site / "profile.json").symlink_to(str(stem) + ".speedscope.json")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(site), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = "http://127.0.0.1:%d/" % server.server_address[1]
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTEFACTS / "speedscope-seed.png"
        out = subprocess.run(["node", str(ROOT / "tests" / "python" / "speedscope_view.js"), base + "app/index.html",
                              base + "profile.json", str(shot)], capture_output=True, timeout=120,
                             env=dict(os.environ, NODE_MODULES=str(NODE_MODULES)))
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr.decode(errors="replace")[-3000:]
    page = json.loads(out.stdout)
    assert page["errors"] == []
    for name in SEED_FUNCTIONS:
        assert "py::" + name in page["text"], page["text"][:3000]
    assert shot.stat().st_size > 5000


def firefox_stacks(stem):
    """[(thread name, [(frame name, category name), ...] innermost first, samples)], resolved
    through the processed profile's tables, each checked on the way."""
    with gzip.open(str(stem) + ".json.gz") as f:
        profile = json.load(f)
    categories = [c["name"] for c in profile["meta"]["categories"]]
    shared = profile.get("shared", {}).get("stringArray")
    out = []
    for thread in profile["threads"]:
        strings = thread.get("stringArray", shared)
        stacks, frames, funcs, samples = (thread[k] for k in ("stackTable", "frameTable", "funcTable", "samples"))
        for table in (stacks, frames, funcs, samples):
            lengths = {len(v) for k, v in table.items() if isinstance(v, list)}
            assert lengths == {table["length"]}, (thread["name"], lengths, table["length"])
        # Stack i's frames, innermost first: its frame, then its prefix's (which comes before it).
        chains = []
        for i in range(stacks["length"]):
            frame, prefix = stacks["frame"][i], stacks["prefix"][i]
            assert prefix is None or 0 <= prefix < i, (i, prefix)
            name = strings[funcs["name"][frames["func"][frame]]]
            category = categories[frames["category"][frame]]
            chains.append([(name, category)] + (chains[prefix] if prefix is not None else []))
        weights = samples.get("weight") or [1] * samples["length"]
        for s, w in zip(samples["stack"], weights):
            out.append((thread["name"], chains[s] if s is not None else [], w))
    return profile, out


def test_firefox_profile_tables(recording):
    work, stem, _ = recording
    profile, stacks = firefox_stacks(stem)
    assert {"Python", "Native", "Kernel"} <= {c["name"] for c in profile["meta"]["categories"]}
    assert "seed_example.py" in profile["meta"]["product"] and "CPython 3.11" in profile["meta"]["product"]
    total = sum(w for _, _, w in stacks)
    nested = sum(w for _, frames, w in stacks
                 if python_order([n for n, _ in frames], work)[:3] == ["py::foo", "py::bar", "py::baz"])
    assert total > 300 and nested >= 0.9 * total, (nested, total)
    kinds = {(n.startswith("py::"), c) for _, frames, _ in stacks for n, c in frames}
    assert (True, "Python") in kinds and (False, "Python") not in kinds, kinds


def test_sample_counts_agree_across_formats(recording):
    work, stem, _ = recording
    folded = totals(((stack[1:], n) for stack, n in folded_stacks(str(stem) + ".folded").items()), work)
    _, fx = firefox_stacks(stem)
    firefox = totals((([n for n, _ in frames], w) for _, frames, w in fx), work)
    with open(str(stem) + ".speedscope.json") as f:
        sp = json.load(f)
    names = [fr["name"] + (":" + fr["file"] if fr["name"].startswith("py::") else "") for fr in sp["shared"]["frames"]]
    speedscope = totals((([names[i] for i in sample], 1) for p in sp["profiles"] for sample in p["samples"]), work)
    pprof = {name: n for name, n in pprof_counts(stem).items() if seed_name(name, work)}
    assert set(folded) == {"py::foo", "py::bar", "py::baz"}, folded
    assert firefox == folded and speedscope == folded and pprof == folded, (folded, firefox, speedscope, pprof)


@pytest.mark.parametrize("name,expected", [
    ("p.pb.gz", [("pprof", "p.pb.gz")]), ("p.speedscope.json", [("speedscope", "p.speedscope.json")]),
    ("p.json.gz", [("firefox", "p.json.gz")]), ("p.folded", [("folded", "p.folded")]),
    ("p.svg", [("svg", "p.svg"), ("folded", "p.folded")])])
def test_format_from_extension(name, expected):
    from perf_trampoline.formats import outputs

    assert outputs(name, []) == expected
    assert outputs(name, ["pprof", "svg"]) == [("svg", "p.svg"), ("pprof", "p.pb.gz")]


def test_report_writes_pprof_for_pb_gz(recording, tmp_path):
    """The issue's case: report -o x.pb.gz wrote an SVG into it; now pprof, and only it."""
    work, stem, _ = recording
    interp = HOST[0]
    data = work / "kept.perf.data"
    status, _, stderr = cli(interp, ["record", "--keep", "-o", str(work / "kept.svg"), "--"] + interp.python
                            + [str(work / "seed_example.py"), "2000000"], work)
    assert status == 0, stderr
    status, _, stderr = cli(interp, ["report", str(data), "-o", str(tmp_path / "p.pb.gz")], work)
    assert status == 0, stderr
    assert [p.name for p in tmp_path.iterdir()] == ["p.pb.gz"]
    assert "py::foo" in pprof("-top", str(tmp_path / "p.pb.gz"))


@pytest.mark.parametrize("name", ["profile.pb", "profile.json", "profile"])
def test_unknown_extension_is_one_line(recording, tmp_path, name):
    work, stem, _ = recording
    # The output is checked before the recording is read (any existing file will do).
    status, stdout, stderr = cli(HOST[0], ["report", str(stem) + ".folded", "-o", str(tmp_path / name)], work)
    assert status != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "no format has this extension" in lines[0] and "--format" in lines[0], stderr
    assert list(tmp_path.iterdir()) == []


# perf script -F FIELDS --ns, as record's fp and dwarf modes read it: two threads, kernel frames.
PERF_SCRIPT = (
    "python 7/7 100.000000100:    1000000 \n"
    "\tffffffff81000130 entry_SYSCALL_64 ([kernel.kallsyms])\n"
    "\t7f01 py::foo:/a.py (/tmp/perf-7.map)\n"
    "\t7f02 _PyEval_EvalFrameDefault+0x10 (/usr/bin/python3.11)\n"
    "\t7f03 py::bar:/a.py (/tmp/perf-7.map)\n"
    "\n"
    "worker thread 7/8 100.000000300:     500000 \n"
    "\t7f03 py::bar:/a.py (/tmp/perf-7.map)\n"
    "\n"
)


def test_perf_script_reader_keeps_time_threads_and_kinds(tmp_path):
    from perf_trampoline.stacks import read_perf_script

    samples = read_perf_script(PERF_SCRIPT.splitlines(True))
    assert len(samples) == 2
    samples.write("speedscope", str(tmp_path / "s.json"), "title")
    sp = json.loads((tmp_path / "s.json").read_text())
    assert [p["name"] for p in sp["profiles"]] == ["python (pid 7, tid 7)", "worker thread (pid 7, tid 8)"]
    assert [p["weights"] for p in sp["profiles"]] == [[1000000], [500000]]
    frames = sp["shared"]["frames"]
    assert [[frames[i]["name"] for i in s] for s in sp["profiles"][0]["samples"]] == [
        ["py::bar", "_PyEval_EvalFrameDefault", "py::foo", "entry_SYSCALL_64"]]
    assert {f["name"]: f.get("file") for f in frames} == {
        "py::bar": "/a.py", "py::foo": "/a.py", "_PyEval_EvalFrameDefault": "python3.11",
        "entry_SYSCALL_64": "[kernel.kallsyms]"}
    samples.write("firefox", str(tmp_path / "f.json.gz"), "title")
    _, stacks = firefox_stacks(tmp_path / "f")
    assert stacks[0][1] == [("entry_SYSCALL_64", "Kernel"), ("py::foo:/a.py", "Python"),
                            ("_PyEval_EvalFrameDefault", "Native"), ("py::bar:/a.py", "Python")]
    with gzip.open(str(tmp_path / "f.json.gz")) as f:
        threads = json.load(f)["threads"]
    # Times in ms from the first sample, CPU deltas in µs (the periods), one track per thread.
    by_name = {t["name"]: t["samples"] for t in threads}
    assert by_name["python"]["timeDeltas"] == [0.0] and by_name["worker thread"]["timeDeltas"] == [0.0002]
    assert by_name["python"]["threadCPUDelta"] == [1000] and by_name["worker thread"]["threadCPUDelta"] == [500]


def test_record_refuses_an_unknown_extension_before_recording(tmp_path):
    if not HOST:
        pytest.skip("host-3.11 missing: run scripts/test-interpreters.sh")
    status, stdout, stderr = cli(HOST[0], ["record", "-o", "x.pb", "--"] + HOST[0].python + ["-c", "print('ran')"],
                                 tmp_path)
    assert status == 2 and "ran" not in stdout
    assert stderr.strip().splitlines() == [stderr.strip()] and "x.pb: no format has this extension" in stderr, stderr
    assert list(tmp_path.iterdir()) == []
