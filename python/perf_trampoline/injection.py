"""``perf inject --jit`` given only the jitted functions a recording's samples can reach:
perf inject writes one ELF file per jitdump record, so on its own it takes minutes for a
program that ran many thousand functions; filtered first, it takes what the samples take."""

import os
import re
import shutil
import tempfile

from . import _native, namespaces
from .console import Failure, Progress, say
from .machine import run_perf

# perf's libdw unwinder takes a jitted image's load address from its mapping's start only when
# the image's path starts with this (else from start minus file offset, which misses its CFI):
# every jitted-*.so we have perf write goes under it, or DWARF unwinding stops at the first one.
JITTED_PREFIX = "/tmp/jitted-"


def new_jitted_dir(label):
    """A new directory of ours (0700) for the jitted code of one injection, under JITTED_PREFIX."""
    label = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:40]
    return tempfile.mkdtemp(prefix=os.path.basename(JITTED_PREFIX) + label + "-", dir=os.path.dirname(JITTED_PREFIX))


def inject(perf, data, out, directory, moved=None):
    """Injects the recording ``data`` into ``out``; the filtered jitdumps and perf's
    ``jitted-*.so`` files go to ``directory`` (existing, empty, ours) and must stay there
    for as long as ``out`` is read. ``moved``: {(pid, path): where perf opens that file}."""
    progress = Progress("choosing the functions the samples reach")
    try:
        prepared = _native.prepare_injection(data, directory, lambda n, _: progress.tick("%d samples" % n),
                                             moved or {})
    except ValueError as e:
        raise Failure(str(e)) from None
    for note in prepared["notes"]:
        say("note: jitdump not read, its functions stay unnamed: " + note)
    kept = sum(k for _, _, k, _ in prepared["dumps"])
    total = sum(t for _, _, _, t in prepared["dumps"])
    progress.done("%d of %d functions, from %d samples" % (kept, total, prepared["samples"]))
    progress = Progress("perf inject --jit")
    # perf inject also copies every jitted-*.so into a build-id cache: one of its own, removed
    # after, keeps them out of ~/.debug (perf report finds them by path).
    cache = os.path.join(directory, "buildid")
    try:
        run_perf(perf, ["--buildid-dir", cache, "inject", "--jit", "-i", prepared["perf_data"], "-o", out],
                 "perf inject --jit", preexec_fn=namespaces.keep_perf_in_our_mounts)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        os.unlink(prepared["perf_data"])
    progress.done("%d functions" % kept)
