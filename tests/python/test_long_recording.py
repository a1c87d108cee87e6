"""Long recordings stay small: `record`'s default mode reads perf's output as it is written,
so a minute of four busy threads needs next to no disk (issue 20). Real perf, one real
interpreter, peak disk measured by polling every directory the command writes to."""

import os
import pathlib
import re
import shutil
import threading
import time

import pytest
from conftest import INTERPRETERS
from test_cli import cli, folded_stacks, qualnames
from test_unwind import note, share

HERE = pathlib.Path(__file__).resolve().parent
LIMIT = 200e6

# One interpreter: the disk a recording needs depends on perf and on how we read its output,
# not on the Python version, and a minute of 2 busy CPUs per interpreter is too much for this
# shared machine. sid's 3.14 is where the issue measured 1.2 GB for 18 s (no frame pointers:
# every frame needs the copied stack); the host's 3.11 stands in when the root is missing.
CHOSEN = next((i for name in ("sid-3.14", "host-3.11") for i in INTERPRETERS if i.name == name), None)


def disk_use(paths):
    """Bytes allocated to the files under ``paths`` (as du counts them)."""
    total = 0
    for top in paths:
        for base, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(base, name)).st_blocks * 512
                except FileNotFoundError:
                    pass
    return total


class PeakDisk(threading.Thread):
    """Polls the disk use of ``paths`` (and of perf maps made since it started) until stopped."""

    def __init__(self, paths):
        threading.Thread.__init__(self, daemon=True)
        self.paths, self.peak, self.polls, self.done = paths, 0, 0, threading.Event()
        self.start_time = time.time()

    def run(self):
        while not self.done.wait(0.25):
            maps = [p for p in pathlib.Path("/tmp").glob("perf-*.map")
                    if _mtime(p) >= self.start_time - 1]
            self.peak = max(self.peak, disk_use(self.paths) + sum(_blocks(p) for p in maps))
            self.polls += 1

    def stop(self):
        self.done.set()
        self.join()


def _mtime(path):
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0


def _blocks(path):
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0


def chain_share(stacks, prog):
    """Samples whose Python frames reach from the thread's function to the one sampled."""
    return share(stacks, lambda s: qualnames(s, prog)[:2] == ["worker", "step"])


def record(interp, work, seconds, name):
    prog = work / "busy_threads.py"
    shutil.copy(HERE / "busy_threads.py", prog)
    # A private TMPDIR and HOME (perf's build-id cache, ~/.debug) inside the work directory:
    # every byte the command and perf write lands where the poller looks.
    tmp, home = work / "tmp", work / "home"
    tmp.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    poller = PeakDisk([work])
    poller.start()
    try:
        status, stdout, stderr = cli(interp, ["record", "-o", name + ".svg", "--"] + interp.python
                                     + [str(prog), str(seconds)], work,
                                     env={"TMPDIR": str(tmp), "HOME": str(home), "PERF_TRAMPOLINE_DIR": str(tmp)})
    finally:
        poller.stop()
    assert status == 0, stderr
    return folded_stacks(work / (name + ".folded")), stderr, poller, str(prog)


@pytest.mark.skipif(CHOSEN is None, reason="neither sid-3.14 nor host-3.11: run scripts/test-interpreters.sh")
def test_a_minute_of_four_busy_threads_stays_under_200_mb(work):
    short, _, _, prog = record(CHOSEN, work, 5, "short")
    long, stderr, poller, prog = record(CHOSEN, work, 60, "long")
    streamed = re.search(r"recording: (\d+) samples, ([\d.]+) (MB|KB) of perf data", stderr)
    assert streamed, stderr
    processing = re.search(r"processing: \d+ samples in all \(([\d.]+) s\)", stderr)
    assert processing, stderr
    lost = re.search(r"perf lost (\d+) records", stderr)
    figures = {"interpreter": CHOSEN.name, "peak_disk_mb": poller.peak / 1e6, "polls": poller.polls,
               "lost_records": int(lost.group(1)) if lost else 0,
               "samples": int(streamed.group(1)),
               "streamed_mb": float(streamed.group(2)) / (1 if streamed.group(3) == "MB" else 1000),
               "processing_s": float(processing.group(1)),
               "chain_short": chain_share(short, prog), "chain_long": chain_share(long, prog)}
    note("long_recording", figures)
    print(figures)
    assert poller.polls >= 100, figures  # it watched the whole minute
    assert poller.peak < LIMIT, figures
    # What a perf.data of the same recording would have taken: the bound means something.
    assert figures["streamed_mb"] * 1e6 > LIMIT, figures
    assert figures["chain_long"] >= 0.9, figures
    assert figures["chain_long"] >= figures["chain_short"] - 0.03, figures
