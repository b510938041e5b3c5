"""``layerbox cp`` with Docker's SRC/DEST rules, on stopped and running containers; paths
inside the container never resolve outside it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

from tests.support.images import REPO_ROOT, layerbox


def _host_tree(base):
    (base / "dir/sub").mkdir(parents=True)
    (base / "dir/f").write_text("a")
    (base / "dir/sub/g").write_text("b")
    (base / "dir/link").symlink_to("f")
    (base / "file").write_text("top")


def test_copy_into_a_stopped_container_follows_docker_rules(root, tmp_path):
    _host_tree(tmp_path)
    layerbox(root, "create", "--name", "c", "busybox", "true")
    layerbox(root, "cp", str(tmp_path / "file"), "c:/file1")          # new name
    layerbox(root, "cp", str(tmp_path / "file"), "c:/etc/")           # into a directory
    layerbox(root, "cp", str(tmp_path / "dir"), "c:/newdir")          # dir to a new name
    layerbox(root, "cp", str(tmp_path / "dir"), "c:/tmp")             # dir into a dir
    layerbox(root, "cp", str(tmp_path / "dir") + "/.", "c:/root")     # contents only
    missing = layerbox(root, "cp", str(tmp_path / "file"), "c:/nosuch/", check=False)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    changes = set(layerbox(root, "diff", "c").stdout.splitlines())
    assert {"A /file1", "A /etc/file", "A /newdir/sub/g", "A /newdir/link", "A /tmp/dir/f",
            "A /root/f", "A /root/sub/g"} <= changes
    assert not {"A /root/dir", "A /nosuch"} & changes
    out = layerbox(root, "start", "-a", "c").stdout  # the copies are in the container
    got = layerbox(root, "run", "--rm", "busybox", "true")
    assert out == "" and got.returncode == 0
    assert not [line for line in open("/proc/self/mountinfo") if str(root) in line]


def test_copy_out_of_a_running_container_and_as_a_tar(root, tmp_path):
    layerbox(root, "run", "-d", "--name", "r", "busybox", "sh", "-c",
             "mkdir /d; echo x > /d/x; ln -s /bin/busybox /d/sh; sleep 60")
    layerbox(root, "exec", "r", "true")
    layerbox(root, "cp", "r:/d", str(tmp_path))
    assert (tmp_path / "d/x").read_text() == "x\n"
    assert os.readlink(tmp_path / "d/sh") == "/bin/busybox"
    layerbox(root, "cp", "-L", "r:/d/sh", str(tmp_path / "busybox"))
    assert (tmp_path / "busybox").stat().st_size > 100_000
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "cp",
                           "r:/d", "-"], capture_output=True, cwd=REPO_ROOT, check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        assert sorted(tar.getnames()) == ["d", "d/sh", "d/x"]
    # A tar from stdin lands in a container directory.
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("from-stdin.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"tar"))
    layerbox(root, "cp", "-", "r:/tmp", input=buf.getvalue())
    assert layerbox(root, "exec", "r", "cat", "/tmp/from-stdin.txt").stdout == "tar"


def test_container_symlinks_resolve_inside_the_container(root, tmp_path):
    layerbox(root, "run", "--name", "s", "busybox", "sh", "-c",
             "ln -s /../../../../etc /escape; ln -s ../../../.. /up; echo inside > /etc/marker")
    layerbox(root, "cp", "s:/escape/marker", str(tmp_path / "m1"))
    assert (tmp_path / "m1").read_text() == "inside\n"
    layerbox(root, "cp", str(tmp_path / "m1"), "s:/up/etc/")   # lands in the container's /etc
    assert "A /etc/m1" in layerbox(root, "diff", "s").stdout.splitlines()
    assert not os.path.exists("/etc/m1")
    bad = layerbox(root, "cp", "s:/nope", str(tmp_path / "x"), check=False)
    assert bad.returncode != 0 and "Could not find the file /nope" in bad.stderr
    both = layerbox(root, "cp", "s:/a", "s:/b", check=False)
    assert both.returncode != 0 and both.stderr.count("\n") == 1
