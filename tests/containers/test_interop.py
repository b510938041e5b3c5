"""Images we commit are read by other tools: umoci unpacks them and Podman runs them
with the same files (a deleted tree stays deleted, an edit stays edited)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.support.images import layerbox

pytestmark = pytest.mark.skipif(not shutil.which("podman") or not shutil.which("umoci"),
                                reason="podman and umoci are installed by scripts/setup")


@pytest.fixture
def committed(root):
    """An image whose top layer edits /etc/motd and deletes a tree of the layer below."""
    layerbox(root, "run", "--name", "base", "busybox", "sh", "-c",
             "mkdir -p /bin/somedir/sub && echo c > /bin/somedir/sub/c")
    layerbox(root, "commit", "base", "base:v1")
    layerbox(root, "run", "--name", "lab", "base:v1", "sh", "-c",
             "echo edited >> /etc/motd && rm -r /bin/somedir && touch /added")
    return layerbox(root, "commit", "lab", "lab:change").stdout.strip()


def test_umoci_unpacks_the_committed_image(root, committed, tmp_path):
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{root}/oci:lab:change", str(bundle)],
                   check=True, capture_output=True)
    rootfs = bundle / "rootfs"
    assert (rootfs / "added").exists()
    assert not (rootfs / "bin" / "somedir").exists()
    assert (rootfs / "etc" / "motd").read_text().endswith("edited\n")


def test_podman_runs_the_committed_image(root, committed, tmp_path):
    runroot = tempfile.mkdtemp(prefix="lbx-podman-")    # podman wants it < 50 characters
    podman = ["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
              "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
              "--events-backend", "none", "--runtime", "runc"]
    try:
        pull = subprocess.run([*podman, "pull", "-q", f"oci:{root}/oci:lab:change"],
                              capture_output=True, text=True, timeout=300)
        assert pull.returncode == 0, pull.stderr
        out = subprocess.run(
            [*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=4096:4096", committed[7:19], "sh", "-c",
             "ls /added; ls /bin/somedir 2>&1; tail -1 /etc/motd"],
            capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[0] == "/added"
        assert "No such file or directory" in out.stdout
        assert out.stdout.splitlines()[-1] == "edited"
    finally:
        subprocess.run([*podman, "system", "reset", "-f"], capture_output=True, timeout=300)
        shutil.rmtree(runroot, ignore_errors=True)
