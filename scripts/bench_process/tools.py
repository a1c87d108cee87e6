"""Small pieces the whole-process benchmark scripts share: running a command, timing it, and
removing what a target wrote to /tmp."""

import glob
import os
import subprocess
import sys
import time


def run(cmd, **kw):
    """stdout of ``cmd``; exits with its stderr when it fails."""
    out = subprocess.run(cmd, capture_output=True, **kw)
    if out.returncode != 0:
        sys.exit("%s: %s failed: %s" % (os.path.basename(sys.argv[0]), " ".join(map(str, cmd[:6])),
                                        out.stderr.decode(errors="replace")[-1500:]))
    return out.stdout.decode()


def timed(cmd, **kw):
    """Wall seconds of ``cmd``."""
    started = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - started


def remove_outputs(pids):
    """The targets' perf maps and jitdumps, and the jitted-*.so files perf inject wrote for them."""
    for pid in pids:
        for path in ["/tmp/perf-%d.map" % pid, "/tmp/jit-%d.dump" % pid] + glob.glob("/tmp/jitted-%d-*.so" % pid):
            if os.path.exists(path):
                os.unlink(path)
