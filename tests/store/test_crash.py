"""A writer killed midway leaves no half image; the next run cleans up; re-import works."""

import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.store.helpers import assert_clean, db_rows, layerbox, store_files
from tests.support.images import REPO_ROOT

BIG = 48 << 20


@pytest.fixture(scope="module")
def big_tar(tmp_path_factory):
    """A layer tar with 48 MB of incompressible data (slow enough to kill mid-write)."""
    directory = tmp_path_factory.mktemp("big")
    payload = directory / "payload"
    with open(payload, "wb") as f:
        for _ in range(BIG >> 20):
            f.write(os.urandom(1 << 20))
    path = directory / "big.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(payload, arcname="data/payload")
    payload.unlink()
    return path


def _poll(predicate, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)  # polling interval, not a wait for an event
    raise AssertionError("condition not reached")


def _tmp_entries(root, suffix):
    try:
        return [e for e in os.scandir(root / "tmp") if e.name.endswith(suffix)]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("phase", ["writing-blob", "unpacking"])
def test_kill_import_midway(busybox_root, big_tar, phase):
    before = store_files(busybox_root)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--root", str(busybox_root),
                             "import", str(big_tar), "big:v1"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        if phase == "writing-blob":
            reached = _poll(lambda: any(e.stat().st_size > (8 << 20)
                                        for e in _tmp_entries(busybox_root, ".blob")), proc)
        else:
            reached = _poll(lambda: bool(_tmp_entries(busybox_root, ".layer")), proc)
        assert reached, proc.communicate()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert store_files(busybox_root)["tmp"]  # the killed writer left its temp files
    assert_clean(busybox_root)  # system check: opening cleaned up, everything consistent
    assert store_files(busybox_root) == before
    assert db_rows(busybox_root, "SELECT COUNT(*) FROM leases") == [(0,)]
    assert "big" not in layerbox(busybox_root, "images").stdout
    layerbox(busybox_root, "import", str(big_tar), "big:v1")
    assert "big" in layerbox(busybox_root, "images").stdout
    assert_clean(busybox_root)
