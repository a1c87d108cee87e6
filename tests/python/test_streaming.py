"""`record`'s default mode reads perf's output as it is written (streaming.py, perfdata/
stream.rs): --duration, --keep's copy of the stream for perf report, progress lines, bad
options. Real perf on the two main set-ups (host-3.11 with perf 6.1, sid-3.15 with perf 7.2)."""

import os
import pty
import re
import signal
import stat
import subprocess

import pytest
from test_cli import (
    MAIN,
    busy_program,
    clean_env,
    cli,
    cli_argv,
    folded_stacks,
    leftovers,
    now,
    remove_leftovers,
    top_self_function,
)


@pytest.mark.parametrize("main_interp", MAIN)
def test_duration_stops_recording_and_the_command(main_interp, work):
    prog = busy_program(work)
    since = now()
    status, stdout, stderr = cli(main_interp, ["record", "--duration", "2", "-o", "d.svg", "--"]
                                 + main_interp.python + [prog, "300", "exit"], work)
    pid = int(stdout.split()[0])
    # perf stops, and ends the command as it does on Ctrl-C (SIGTERM): the 300 s program is gone.
    assert status == 128 + signal.SIGTERM, stderr
    assert "recording stopped after 2 s (--duration); the target was killed by SIGTERM" in stderr
    assert top_self_function(stdout) == "py::spin:" + prog
    assert leftovers(pid, since) == []
    assert sorted(os.listdir(work)) == ["busy.py", "d.folded", "d.svg"], "no perf.data on disk"


@pytest.mark.parametrize("args, message", [
    (["--duration", "0"], "argument --duration: a number of seconds above 0"),
    (["--duration", "x"], "argument --duration: a number of seconds above 0"),
    (["--duration", "1", "--mode", "fp"], "perf-trampoline: --duration is for the unwind mode (the default)"),
])
@pytest.mark.parametrize("main_interp", MAIN)
def test_bad_duration_is_one_line(main_interp, work, args, message):
    prog = busy_program(work)
    status, stdout, stderr = cli(main_interp, ["record"] + args + ["--"] + main_interp.python + [prog, "0", "exit"],
                                 work)
    assert status == 2, stderr
    assert stderr.strip().splitlines()[-1].endswith(message), stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("main_interp", MAIN)
def test_keep_copies_the_stream_for_perf_report(main_interp, work):
    prog = busy_program(work)
    victim = work / "victim"
    victim.write_text("not perf's to write")
    # A link planted where the copy goes is replaced, never followed.
    os.symlink(victim, work / "k.perf.data")
    since = now()
    status, stdout, stderr = cli(main_interp, ["record", "--keep", "-o", "k.svg", "--"] + main_interp.python
                                 + [prog, "1", "exit"], work)
    pid = int(stdout.split()[0])
    try:
        assert status == 0, stderr
        kept = work / "k.perf.data"
        st = os.lstat(kept)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
        assert victim.read_text() == "not perf's to write"
        with open(kept, "rb") as f:
            assert f.read(16) == b"PERFILE2" + (16).to_bytes(8, "little"), "perf's pipe format"
        assert leftovers(pid, since) == ["/tmp/perf-%d.map" % pid], "the perf map stays for report"
        # perf report reads the copy as it reads any perf.data...
        rep = main_interp.perf(["report", "-i", str(kept), "--stdio", "--sort", "pid"], cwd=work)
        assert rep.returncode == 0, rep.stderr.decode()
        assert str(pid) in rep.stdout.decode()
        # ...and so does ours: the same stacks as while it streamed.
        status, stdout, stderr = cli(main_interp, ["report", str(kept), "-o", "rep.svg"], work)
        assert status == 0, stderr
        assert folded_stacks(work / "rep.folded") == folded_stacks(work / "k.folded")
        assert top_self_function(stdout) == "py::spin:" + prog
    finally:
        remove_leftovers(pid)


@pytest.mark.parametrize("main_interp", MAIN)
def test_progress_is_one_line_per_phase_in_a_log(main_interp, work):
    prog = busy_program(work)
    status, stdout, stderr = cli(main_interp, ["record", "-o", "p.svg", "--"] + main_interp.python
                                 + [prog, "2", "exit"], work)
    remove_leftovers(int(stdout.split()[0]))
    assert status == 0, stderr
    recording = [line for line in stderr.splitlines() if line.startswith("perf-trampoline: recording: ")]
    processing = [line for line in stderr.splitlines() if line.startswith("perf-trampoline: processing")]
    samples = sum(folded_stacks(work / "p.folded").values())
    # The command line, then the phase's figures: samples (all of them), bytes, seconds.
    assert len(recording) == 2 and " -o - -- " in recording[0], stderr
    assert recording[1].startswith("perf-trampoline: recording: %d samples, " % samples), stderr
    assert " of perf data unwound as it came (" in recording[1], stderr
    assert processing == ["perf-trampoline: processing: %d samples in all (%s" % (samples, processing[0].split("(")[1])]
    assert "\r" not in stderr


@pytest.mark.parametrize("main_interp", MAIN)
def test_progress_counts_on_a_terminal(main_interp, work):
    prog = busy_program(work)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cli_argv(main_interp, ["record", "-o", "t.svg", "--"] + main_interp.python
                                     + [prog, "3", "exit"]), cwd=work, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        seen += chunk
    stdout, _ = proc.communicate(timeout=300)
    os.close(leader)
    remove_leftovers(int(stdout.split()[0]))
    assert proc.returncode == 0, seen
    text = seen.decode(errors="replace")
    # A running line rewritten in place: elapsed seconds, samples, bytes.
    ticks = re.findall(r"\r\033\[K  \d+ s, \d+ samples, [\d.]+ [KM]B", text)
    assert ticks, text
    assert "perf-trampoline: recording ..." in text and "perf-trampoline: processing" in text
