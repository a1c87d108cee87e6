"""scripts/in-root.sh: a Debian root sees the checkout that runs it, even a fresh clone made
where an earlier, deleted checkout was mounted (how CI clones)."""

import pathlib
import shutil
import subprocess
import tempfile

import pytest
from conftest import INTERPRETERS, ROOT


def _a_debian_root():
    for interp in INTERPRETERS:
        if interp.wrap and interp.wrap[0].endswith("in-root.sh"):
            return interp.wrap[1]
    return None


def _checkout(top, marker):
    """A stand-in checkout at ``top``: the script and one file that names this copy."""
    (top / "scripts").mkdir(parents=True)
    shutil.copy2(ROOT / "scripts" / "in-root.sh", top / "scripts" / "in-root.sh")
    (top / marker).write_text(marker)


def _listing(top, root):
    out = subprocess.run([str(top / "scripts" / "in-root.sh"), root, "ls", str(top)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_a_fresh_clone_at_a_used_path_is_what_the_root_sees():
    root = _a_debian_root()
    if root is None:
        pytest.skip("no Debian root among the test interpreters")
    # Not under /tmp: the root sees /tmp through its own mount, so the checkout's mount
    # would never be made.
    scratch = pathlib.Path(tempfile.mkdtemp(dir="/var/tmp"))
    top = scratch / "checkout"
    try:
        _checkout(top, "first-clone")
        assert "first-clone" in _listing(top, root)
        shutil.rmtree(top)
        _checkout(top, "second-clone")
        assert _listing(top, root) == ["scripts", "second-clone"]
    finally:
        inside = pathlib.Path(root + str(top))
        subprocess.run(["umount", "-l", str(inside)], capture_output=True)
        shutil.rmtree(pathlib.Path(root + str(scratch)), ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
