"""Python in a container, profiled from the host: targets in their own pid and mount namespace
with a private /tmp (made with unshare, as a container has them) recorded with record -p and
with the user's own perf record + fix-maps, on real perf and sid's interpreters; the files
read through the container's root never through a link it planted, and nothing left behind."""

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest
from conftest import INTERPRETERS, ROOT
from perf_trampoline import handoff, host_copies, namespaces
from test_attach import CHAIN, TARGET, chain_share, outcome
from test_attach_refusals import refused
from test_cli import clean_env, cli, cli_argv

# A private /tmp for the namespace, then the command: the sid root's /tmp is the host's, so
# in-root.sh finds it differs from the namespace's own and mounts that one in the root instead.
PRIVATE_TMP = 'mount -t tmpfs -o mode=1777 tmpfs /tmp && exec "$@"'
UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount"]


def interpreter(name, *more):
    """A test parameter: the interpreter ``name`` (skipped when missing) and ``more`` values."""
    found = [i for i in INTERPRETERS if i.name == name]
    return pytest.param(found[0] if found else None, *more, id="-".join((name,) + more),
                        marks=[] if found else pytest.mark.skip(reason="no %s: run scripts/test-interpreters.sh" % name))


needs_unshare = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                   reason="making pid and mount namespaces needs root and unshare(1)")


class Contained:
    """A command in its own pid and mount namespace with a private /tmp; ``pid`` is its
    process as the host numbers it."""

    def __init__(self, command, env=None):
        self.proc = subprocess.Popen(UNSHARE + ["sh", "-c", PRIVATE_TMP, "sh"] + command, env=clean_env(env),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.first_line = self.proc.stdout.readline().decode().strip()
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
            self.pid = int(f.read().split()[0])

    def tmp(self):
        """{name: file type and mode} of what is in its /tmp."""
        root = "/proc/%d/root/tmp" % self.pid
        return {n: os.lstat(os.path.join(root, n)).st_mode for n in os.listdir(root)}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()  # unshare's child is pid 1 there: the namespace goes with it
        self.proc.communicate()


@pytest.fixture
def contained():
    started = []
    yield lambda *a, **kw: started.append(Contained(*a, **kw)) or started[-1]
    for c in started:
        c.stop()


def python_target(py, backend, seconds):
    """TARGET under ``py``'s venv interpreter (our package installed) with support on from
    start-up: its code goes on the command line (the test's /tmp is not the container's)."""
    return (py.wrap + py.python + ["-c", TARGET, str(seconds), "1"], {"PERF_TRAMPOLINE": backend})


def host_files(pid, since):
    """Files for host pid ``pid`` in the host's /tmp, and copies half made, written after
    ``since`` (a time.time(): /tmp keeps what earlier processes with that pid left)."""
    found = []
    for name in os.listdir("/tmp"):
        if name in ("perf-%d.map" % pid, "jit-%d.dump" % pid) or name.startswith(".perf-trampoline-copy-"):
            try:
                if os.lstat(os.path.join("/tmp", name)).st_mtime >= since - 1:
                    found.append(name)
            except FileNotFoundError:
                pass
    return sorted(found)


@needs_unshare
@pytest.mark.parametrize("py, backend, mode", [interpreter("sid-3.15", "perf", "unwind"),
                                               interpreter("sid-3.14", "perf_jit", "dwarf")])
def test_record_pid_of_a_python_in_a_container(py, backend, mode, work, contained):
    since = time.time()
    target = contained(*python_target(py, backend, 12))
    assert target.first_line == "1" and target.pid != 1  # its own pid, not the host's
    inside = target.tmp()
    assert sorted(inside) == (["perf-1.map"] if backend == "perf" else ["jit-1.dump"])
    status, out, err = cli(py, ["record", "-p", str(target.pid), "--mode", mode, "--duration", "3",
                                "-o", str(work / "x.svg")], work)
    assert status == 0, err
    assert "process %d runs in another namespace (its own pid 1)" % target.pid in err, err
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    assert host_files(target.pid, since) == [], "copies left in the host's /tmp"
    assert not [n for n in os.listdir(work) if n.endswith(".perf.data")]
    assert target.tmp() == inside, "the container's /tmp changed"
    assert target.proc.poll() is None


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.14")])
def test_record_pid_attaches_across_the_namespace_with_nothing_installed_inside(py, work, contained):
    plain = "python%d.%d" % py.version  # not the venv's: our package is not on its path
    # The test root shows the checkout inside: hidden, the container cannot see our
    # installation, as a real one cannot, and the attach copies our package in.
    hide = "mount -t tmpfs tmpfs %s && exec \"$@\"" % (ROOT / "target")
    since = time.time()
    target = contained(py.wrap + ["sh", "-c", hide, "sh", plain, "-c", TARGET, "12", "1"])
    assert target.tmp() == {}
    assert not os.path.exists("/proc/%d/root%s" % (target.pid, py.python[0]))
    status, out, err = cli(py, ["record", "-p", str(target.pid), "--duration", "3", "-o", str(work / "x.svg")], work)
    assert status == 0, err
    assert "support is on in process %d" % target.pid in err and "support is off again" in err, err
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    # What the attach leaves in the container: the perf map support wrote there, nothing else
    # (the hand-over directory and our package copied into it are gone).
    assert sorted(target.tmp()) == ["perf-1.map"]
    assert host_files(target.pid, since) == []
    assert target.proc.poll() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_the_hand_over_directory_is_never_made_through_a_link(work):
    # A process whose root has /tmp as a link to /etc: from here the kernel would resolve it
    # against our root, so a path through /proc/PID/root/tmp would land in our /etc.
    root = work / "root"
    root.mkdir()
    (root / "tmp").symlink_to("/etc")
    jailed = subprocess.Popen([sys.executable, "-c", "import os, sys, time; os.chroot(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(60)", str(root)], stdout=subprocess.PIPE)
    try:
        assert jailed.stdout.readline().strip() == b"ready"
        before = sorted(os.listdir("/etc"))
        with pytest.raises(namespaces.UnsafePath, match="tmp is a link or not a directory"):
            handoff.private_place_in(jailed.pid)
        assert sorted(os.listdir("/etc")) == before
        (root / "tmp").unlink()
        (root / "tmp").mkdir(mode=0o1777)
        place = handoff.private_place_in(jailed.pid)
        try:
            made = os.listdir(root / "tmp")
            assert place.seen == "/tmp/" + made[0] and len(made) == 1
            st = os.lstat(root / "tmp" / made[0])
            assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700
            # Swapped for a link after it was made: our path still reaches the directory itself.
            os.rename(root / "tmp" / made[0], root / "tmp" / "moved")
            os.symlink("/etc", root / "tmp" / made[0])
            handoff.create(place.path, "request", b"")
            assert os.path.exists(root / "tmp" / "moved" / "request") and not os.path.exists("/etc/request")
        finally:
            place.remove()
    finally:
        jailed.kill()
        jailed.wait()


STANDBY_DIR = "perf-trampoline-standby-%d" % os.geteuid()


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.13")])
def test_attach_record_and_detach_a_standby_python_in_a_container(py, work, contained):
    # 3.13 has no sys.remote_exec: only its standby FIFO, in the container's /tmp under pid 1.
    target = contained(*python_target(py, "standby", 15))
    assert target.first_line == "1" and target.pid != 1
    inside = target.tmp()
    assert sorted(inside) == [STANDBY_DIR]
    pid = str(target.pid)
    status, out, _ = cli(py, ["doctor", "--pid", pid], work)
    assert "ok    prepared with PERF_TRAMPOLINE=standby" in out, out
    status, _, err = cli(py, ["attach", pid], work)
    assert status == 0 and "support is on in process %s (Python 3.13" % pid in err, err
    status, _, err = cli(py, ["record", "-p", pid, "--duration", "2", "-o", str(work / "x.svg")], work)
    assert status == 0 and "support was already on in process %s (backend perf)" % pid in err, err
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    status, _, err = cli(py, ["detach", pid], work)
    assert status == 0 and "support is off in process %s" % pid in err, err
    # No hand-over directory left: the standby directory and the perf map support wrote.
    assert sorted(target.tmp()) == sorted([STANDBY_DIR, "perf-1.map"])
    assert target.proc.poll() is None


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.13")])
def test_a_timed_out_standby_attach_leaves_the_containers_tmp_as_it_was(py, work, contained):
    target = contained(*python_target(py, "standby", 15))
    inside = target.tmp()
    pid = str(target.pid)
    os.kill(target.pid, signal.SIGSTOP)  # the whole process: its standby thread never reads
    try:
        err = refused(py, work, ["attach", pid, "--timeout", "0.5"],
                      "process %s ran no Python code in its standby thread for 0.5 s" % pid)
        assert "nothing was changed" in err, err
        assert target.tmp() == inside
    finally:
        os.kill(target.pid, signal.SIGCONT)
    # Woken, it reads the withdrawn request (its directory gone) and does nothing; the next
    # request is served.
    status, _, err = cli(py, ["attach", pid], work)
    assert status == 0 and "support is on in process %s" % pid in err, err
    assert sorted(target.tmp()) == sorted(list(inside) + ["perf-1.map"])
    os.kill(target.pid, signal.SIGTERM)
    out, err = target.proc.communicate(timeout=30)
    assert target.proc.returncode == 0 and b"standby" not in err, err  # not a word about the withdrawn one
    result = outcome(out.decode())
    assert result["wrong"] == 0 and result["calls"] > 0 and result["active"] == "True"


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("host-3.11")])
def test_standby_in_a_user_namespace_is_found_under_its_own_uid(py, work, contained):
    # Root here is uid 54321 there: the process names its standby directory by that.
    target = contained(["unshare", "--map-user=54321", "--map-group=54321"] + py.python + ["-c", TARGET, "15", "1"],
                       {"PERF_TRAMPOLINE": "standby"})
    assert target.first_line == "1" and sorted(target.tmp()) == ["perf-trampoline-standby-54321"]
    pid = str(target.pid)
    status, _, err = cli(py, ["attach", pid], work)
    assert status == 0 and "support is on in process %s" % pid in err, err
    status, _, err = cli(py, ["detach", pid], work)
    assert status == 0 and "support is off in process %s" % pid in err, err
    assert sorted(target.tmp()) == ["perf-1.map", "perf-trampoline-standby-54321"]


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.13")])
def test_a_standby_fifo_of_its_pid_that_it_does_not_read_is_not_its(py, work, contained):
    # As in a /tmp shared across pid namespaces: the FIFO of its own pid is another process's,
    # here the test's. The request must not go there.
    target = contained(py.wrap + py.python + ["-c", TARGET, "15", "1"])
    directory = "/proc/%d/root/tmp/%s" % (target.pid, STANDBY_DIR)
    os.mkdir(directory, 0o700)
    os.mkfifo(directory + "/1", 0o600)
    reader = os.open(directory + "/1", os.O_RDONLY | os.O_NONBLOCK)
    try:
        refused(py, work, ["attach", str(target.pid)], "process %d runs CPython 3.13, which cannot be attached to "
                "without preparation: start it with PERF_TRAMPOLINE=standby" % target.pid)
        assert os.read(reader, 4096) == b""
    finally:
        os.close(reader)


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.13")])
def test_a_standby_directory_others_can_write_or_a_file_that_is_no_fifo_is_refused(py, work, contained):
    target = contained(py.wrap + py.python + ["-c", TARGET, "15", "1"])
    directory = "/proc/%d/root/tmp/%s" % (target.pid, STANDBY_DIR)
    os.mkdir(directory)
    os.chmod(directory, 0o777)
    pid = target.pid
    refused(py, work, ["attach", str(pid)], "process %d's standby FIFO is not safe to use: /tmp/%s has mode 777: "
            "others could change what is in it (fix: remove that" % (pid, STANDBY_DIR))
    os.chmod(directory, 0o700)
    with open(directory + "/1", "w"):
        os.chmod(directory + "/1", 0o600)
    refused(py, work, ["attach", str(pid)], "process %d's standby FIFO is not safe to use: /tmp/%s/1 is not a FIFO "
            "of its own (-rw-------, uid %d)" % (pid, STANDBY_DIR, os.geteuid()))
    assert os.path.getsize(directory + "/1") == 0


# Its main thread waits in one system call, running no Python, until SIGUSR1.
WAITS = ("import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])\nprint(1, flush=True)\n"
         "signal.sigwait([signal.SIGUSR1])\nimport time\ntime.sleep(60)\n")


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.14")])
def test_a_timed_out_remote_exec_attach_leaves_only_its_script_for_the_late_run(py, work, contained):
    hide = "mount -t tmpfs tmpfs %s && exec \"$@\"" % (ROOT / "target")  # our package gets copied in
    target = contained(py.wrap + ["sh", "-c", hide, "sh", "python%d.%d" % py.version, "-c", WAITS])
    pid = str(target.pid)
    refused(py, work, ["attach", pid, "--timeout", "0.5"], "process %s ran no Python code in its main thread" % pid)
    # sys.remote_exec cannot be taken back: the script it will run stays, nothing else.
    made = list(target.tmp())
    assert len(made) == 1 and made[0].startswith("perf-trampoline-attach-"), made
    assert os.listdir("/proc/%d/root/tmp/%s" % (target.pid, made[0])) == ["script.py"]
    os.kill(target.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 20
    while target.tmp() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.tmp() == {}, "the late run removes the rest and turns nothing on"
    assert target.proc.poll() is None


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.13")])
def test_a_link_planted_at_the_standby_directory_is_refused(py, work, contained):
    # An absolute link resolves against the reader's root: followed from the host, the
    # request would go to the host's FIFO of that name, here one the test reads.
    decoy = work / "decoy"
    decoy.mkdir(mode=0o700)
    os.mkfifo(decoy / "1", 0o600)
    reader = os.open(decoy / "1", os.O_RDONLY | os.O_NONBLOCK)
    try:
        plant = 'ln -s %s /tmp/%s && exec "$@"' % (decoy, STANDBY_DIR)
        target = contained(["sh", "-c", plant, "sh"] + py.wrap + py.python + ["-c", TARGET, "15", "1"],
                           {"PERF_TRAMPOLINE": "standby"})
        assert target.first_line == "1"
        refused(py, work, ["attach", str(target.pid)],
                "process %d's standby FIFO is not safe to use: /tmp/%s in process %d's root: %s is a link or not a "
                "directory (fix: remove that, then restart the program with PERF_TRAMPOLINE=standby)"
                % (target.pid, STANDBY_DIR, target.pid, STANDBY_DIR))
        assert os.read(reader, 4096) == b""
        assert sorted(target.tmp()) == [STANDBY_DIR] and target.proc.poll() is None
    finally:
        os.close(reader)


# At SIGUSR1 (sent once perf records) runs TARGET in a child process for a little while, then
# waits: the recording sees the child's samples, and the child has exited before it ends.
PARENT = r'''
import os, signal, subprocess, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
print(os.getpid(), flush=True)
signal.sigwait([signal.SIGUSR1])
subprocess.run([sys.executable, "-c", sys.argv[1], "1.5", "1"], stdout=subprocess.DEVNULL)
time.sleep(30)
'''


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.15")])
def test_record_pid_sees_a_child_that_exits_before_the_end(py, work, contained):
    since = time.time()
    target = contained(py.wrap + py.python + ["-c", PARENT, TARGET], {"PERF_TRAMPOLINE": "perf"})
    rec = subprocess.Popen(cli_argv(py, ["record", "-p", str(target.pid), "--duration", "3", "-o",
                                         str(work / "x.svg")]), cwd=work, env=clean_env(), stderr=subprocess.PIPE,
                           stdout=subprocess.DEVNULL)
    lines = []
    for line in rec.stderr:
        lines.append(line.decode())
        if "recording: perf record" in lines[-1]:
            time.sleep(1.0)  # perf's start-up
            os.kill(target.pid, signal.SIGUSR1)
            break
    err = "".join(lines) + rec.stderr.read().decode()
    assert rec.wait() == 0, err
    own = re.findall(r"process (\d+) runs in another namespace \(its own pid (\d+)\): its perf map", err)
    assert len(own) == 2 and {p for _, p in own} >= {"1"}, err
    assert os.path.exists(work / "x.folded"), err
    share = chain_share(work / "x.folded")
    assert share >= 0.9, (share, (work / "x.folded").read_text())
    for pid, _ in own:
        assert host_files(int(pid), since) == [], "copies left in the host's /tmp"
    assert sorted(target.tmp()) == ["perf-1.map", "perf-%s.map" % max(p for _, p in own)]


@needs_unshare
@pytest.mark.parametrize("py", [interpreter("sid-3.15")])
def test_fix_maps_then_perf_script_names_the_frames(py, work, contained):
    target = contained(*python_target(py, "perf", 8))
    data = str(work / "perf.data")
    out = py.perf(["record", "-q", "-g", "-F", "999", "-o", data, "-p", str(target.pid), "--", "sleep", "2"])
    assert out.returncode == 0, out.stderr
    status, out, _ = cli(py, ["doctor", "--pid", str(target.pid)], work)
    assert "process %d runs in another mount namespace (its own pid 1): record -p copies" % target.pid in out, out
    assert "support is on in it already (backend perf)" in out, out
    status, _, err = cli(py, ["fix-maps", str(target.pid)], work)
    assert status == 0, err
    copy = "/tmp/perf-%d.map" % target.pid
    assert "process %d (its own pid 1): perf map copied to %s" % (target.pid, copy) in err, err
    st = os.lstat(copy)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    # Once the process is gone perf cannot look into its namespace: only the copy names frames.
    target.stop()
    try:
        named = _chained_samples(py, data)
        aside = copy + ".aside"
        os.rename(copy, aside)
        try:
            unnamed = _chained_samples(py, data)
        finally:
            os.rename(aside, copy)
    finally:
        os.unlink(copy)
    assert named >= 0.9, named
    assert unnamed == 0, unnamed


def _chained_samples(py, data):
    """The share of ``data``'s samples whose Python frames (perf script) end in CHAIN."""
    out = py.perf(["script", "-i", data, "-F", "ip,sym"])
    assert out.returncode == 0, out.stderr
    samples = [block for block in out.stdout.decode(errors="replace").split("\n\n") if block.strip()]
    chained = 0
    for block in samples:
        names = [line.split()[1][4:].split(":")[0] for line in block.splitlines()
                 if len(line.split()) > 1 and line.split()[1].startswith("py::")]
        chained += tuple(reversed(names))[-3:] == CHAIN
    return chained / len(samples)


@needs_unshare
def test_links_the_container_planted_are_never_followed(work, contained):
    victim = work / "victim"
    victim.write_text("host secret\n")
    # Absolute links resolve against the reader's root: followed from the host, they would
    # read (or write) the host's files.
    target = contained(["sh", "-c", "ln -s %s /tmp/perf-1.map && mkdir /tmp/d && ln -s %s /tmp/jit-1.dump "
                        "&& ln -s /etc /tmp/etc && echo ready && exec sleep 60" % (victim, victim)])
    assert target.first_line == "ready"
    foreign = namespaces.foreign(target.pid)
    assert foreign is not None and foreign.own_pid == 1 and foreign.other_mounts
    for path, why in (("/tmp/perf-1.map", "is a symbolic link"), ("/tmp/etc/hostname", "etc is a link"),
                      ("/tmp/../etc/hostname", "not a plain absolute path")):
        with pytest.raises(namespaces.UnsafePath, match=why.replace(".", r"\.")):
            namespaces.read_file(target.pid, path)
    # A planted link where the host copy goes is replaced by our file, never written through.
    planted = "/tmp/perf-%d.map" % target.pid
    os.symlink(str(victim), planted)
    copies = host_copies.HostCopies()
    try:
        copies.watch(target.pid)
        assert copies.copy() == []
        assert len(copies.notes) == 2 and all("symbolic link" in n for n in copies.notes), copies.notes
        assert os.path.islink(planted)
        copies._write(planted, b"1000 10 py::f:x.py\n")
        assert not os.path.islink(planted) and stat.S_IMODE(os.lstat(planted).st_mode) == 0o600
        assert victim.read_text() == "host secret\n"
    finally:
        copies.remove()
        if os.path.lexists(planted):
            os.unlink(planted)
    assert not os.path.lexists(planted)


@pytest.mark.parametrize("py", [interpreter("sid-3.15")])
def test_fix_maps_on_a_process_of_our_own_namespaces_and_a_missing_one(py, work):
    # Where the command runs: the same root, once in-root.sh has gone in (its line says so).
    beside = subprocess.Popen(py.wrap + ["sh", "-c", "echo in && exec sleep 30"], stdout=subprocess.PIPE)
    try:
        assert beside.stdout.readline() == b"in\n"
        status, _, err = cli(py, ["fix-maps", str(beside.pid)], work)
    finally:
        beside.kill()
        beside.communicate()
    assert status == 0 and "in our own namespaces" in err, err
    gone = subprocess.Popen(["true"])
    gone.wait()
    status, _, err = cli(py, ["fix-maps", str(gone.pid)], work)
    assert status == 2 and err.strip() == "perf-trampoline: no process %d (check the pid: `ps -e` lists them)" \
        % gone.pid, err

