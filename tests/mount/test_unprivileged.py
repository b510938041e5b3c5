"""The mount program run by a user who may not mount(2): it goes through fusermount3,
which mounts and hands back the /dev/fuse descriptor, as libfuse does. Run as nobody,
with the system's python3 (the venv's interpreter lives under /root)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fusemount import mount_entry, mount_info, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("fusermount3") or not Path("/usr/bin/python3").exists(),
    reason="needs root (to become nobody), fusermount3 and the system python3")

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def layout(tmp_path):
    for parent in (tmp_path, *tmp_path.parents):   # pytest's directories are root's alone
        if parent == parent.parent or parent.stat().st_mode & 0o005 == 0o005:
            break
        os.chmod(parent, parent.stat().st_mode | 0o005)
    (tmp_path / "lower").mkdir()
    (tmp_path / "lower" / "f").write_text("from the lower layer\n")
    for name in ("upper", "work", "mnt", "log"):
        (tmp_path / name).mkdir()
        os.chown(tmp_path / name, NOBODY, NOBODY)
    return tmp_path


def _as_nobody(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=60, **kwargs)


def _mount_as_nobody(layout) -> subprocess.CompletedProcess:
    options = (f"lowerdir={layout / 'lower'},upperdir={layout / 'upper'},"
               f"workdir={layout / 'work'}")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           "LAYERBOX_OVERLAYFS_LOG": str(layout / "log" / "daemon.log")}
    return _as_nobody("/usr/bin/python3", "-m", "overlayfs.mount", "-o", options,
                      str(layout / "mnt"), env=env, cwd="/")


def test_a_fuse_device_nobody_may_open_is_one_line_and_nothing_mounted(layout):
    if stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006:
        pytest.skip("/dev/fuse is open to everyone on this machine")
    result = _mount_as_nobody(layout)
    assert result.returncode == 1
    assert result.stderr.startswith(f"layerbox-overlayfs: cannot mount on '{layout / 'mnt'}': ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert mount_entry(layout / "mnt") is None


def test_fusermount3_mounts_for_nobody_and_unmounts(layout):
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o666)     # what distributions ship; this machine has 0600
    try:
        result = _mount_as_nobody(layout)
        assert result.returncode == 0, result.stderr
    finally:
        os.chmod("/dev/fuse", mode)
    try:
        info = mount_info(layout / "mnt")
        assert info["fstype"] == "fuse.layerbox-overlayfs"
        assert f"user_id={NOBODY}" in info["super_options"]
        read = _as_nobody("cat", str(layout / "mnt" / "f"))
        assert read.stdout == "from the lower layer\n"
        assert _as_nobody("sh", "-c", f"echo new > {layout / 'mnt' / 'g'}").returncode == 0
        assert (layout / "upper" / "g").read_text() == "new\n"
    finally:
        unmounted = _as_nobody("fusermount3", "-u", str(layout / "mnt"))
    assert unmounted.returncode == 0, unmounted.stderr
    wait_for(lambda: "exiting" in (layout / "log" / "daemon.log").read_text(),
             "the daemon to exit", 10)
