"""The mount program run by a user who may not mount(2): it goes through fusermount3,
which mounts and hands back the /dev/fuse descriptor, as libfuse does. Run as nobody,
with the system's python3 (the venv's interpreter lives under /root)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.support.fusemount import mount_entry

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("fusermount3") or not Path("/usr/bin/python3").exists(),
    reason="needs root (to become nobody), fusermount3 and the system python3")

NOBODY = 65534
REPO = Path(__file__).resolve().parents[2]
AS_NOBODY = f"setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups"


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
    yield tmp_path
    if mount_entry(tmp_path / "mnt") is not None:
        subprocess.run(["umount", "-l", str(tmp_path / "mnt")], check=False)


def _mount_command(layout) -> str:
    options = (f"lowerdir={layout / 'lower'},upperdir={layout / 'upper'},"
               f"workdir={layout / 'work'}")
    return (f"env -i PATH=/usr/bin:/bin PYTHONPATH={REPO} "
            f"LAYERBOX_OVERLAYFS_LOG={layout / 'log' / 'daemon.log'} "
            f"{AS_NOBODY} /usr/bin/python3 -m overlayfs.mount -o {options} {layout / 'mnt'}")


def test_a_fuse_device_nobody_may_open_is_one_line_and_nothing_mounted(layout):
    if stat.S_IMODE(os.stat("/dev/fuse").st_mode) & 0o006:
        pytest.skip("/dev/fuse is open to everyone on this machine")
    result = subprocess.run(["sh", "-c", _mount_command(layout)], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 1
    assert result.stderr.startswith(f"layerbox-overlayfs: cannot mount on '{layout / 'mnt'}': ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert mount_entry(layout / "mnt") is None


def test_fusermount3_mounts_for_nobody_and_unmounts(layout):
    """In a mount namespace of its own, where /dev/fuse is a node open to everyone (as
    distributions ship it; this machine's is root's): the real one is never touched."""
    mnt = layout / "mnt"
    script = f"""
        set -e
        mknod -m 0666 {layout}/fuse c 10 229
        mount --bind {layout}/fuse /dev/fuse
        trap 'umount -l {mnt} 2>/dev/null || true' EXIT
        {_mount_command(layout)}
        grep " {mnt} " /proc/self/mountinfo | grep -q "user_id={NOBODY}"
        test "$({AS_NOBODY} cat {mnt}/f)" = "from the lower layer"
        {AS_NOBODY} sh -c 'echo new > {mnt}/g'
        {AS_NOBODY} fusermount3 -u {mnt}
        for i in $(seq 100); do grep -q exiting {layout}/log/daemon.log && exit 0; sleep 0.1; done
        echo "the daemon did not exit" >&2; exit 1
    """
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    assert (layout / "upper" / "g").read_text() == "new\n"
