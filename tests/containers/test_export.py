"""``layerbox export`` writes what the container sees (stopped: a read-only union of its
upper dir over the image; running: its live mount), and ``import`` reads it back."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

from tests.support.images import REPO_ROOT, layerbox


def _members(path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def test_export_a_stopped_container_and_import_it_back(root, tmp_path):
    layerbox(root, "run", "--name", "ex", "busybox", "sh", "-c",
             "echo hi > /hello; rm -r /home; ln /bin/busybox /bb2; mkdir -p /a/b")
    out = tmp_path / "ex.tar"
    layerbox(root, "export", "-o", str(out), "ex")
    members = _members(out)
    assert "hello" in members and "a/b" in members and "bin/busybox" in members
    assert not any(n == "home" or n.startswith(("home/", ".wh.")) or "/.wh." in n
                   for n in members)
    linked = [m for m in members.values() if m.islnk()]
    assert {m.name for m in linked} | {linked[0].linkname} == {"bb2", "bin/busybox"}
    # The container's upper dir is untouched by the export, and no mount is left behind.
    assert layerbox(root, "diff", "ex").stdout.split("\n").count("A /hello") == 1
    layerbox(root, "import", str(out), "exported:v1")
    got = layerbox(root, "run", "--rm", "exported:v1", "sh", "-c",
                   "cat /hello; test -e /home || echo no-home")
    assert got.stdout == "hi\nno-home\n"


def test_export_a_running_container_to_stdout(root):
    layerbox(root, "run", "-d", "--name", "live", "busybox", "sleep", "60")
    layerbox(root, "exec", "live", "sh", "-c", "echo now > /written-while-running")
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "container",
                           "export", "live"], capture_output=True, cwd=REPO_ROOT, timeout=120,
                          check=True)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        member = tar.getmember("written-while-running")
        assert tar.extractfile(member).read() == b"now\n"


def test_export_errors_are_one_line(root):
    out = layerbox(root, "export", "nosuch", check=False)
    assert out.returncode != 0 and out.stderr.strip().count("\n") == 0
    assert "No such container" in out.stderr
