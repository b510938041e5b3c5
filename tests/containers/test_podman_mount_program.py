"""Podman runs on our union filesystem: ``layerbox-overlayfs`` as the overlay driver's
``mount_program``, in place of fuse-overlayfs (issue 2). Build, run, diff and commit go
through our mounts; what Podman sees must be what it sees on the kernel overlay."""

from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from tests.support.fusemount import mount_program

pytestmark = pytest.mark.skipif(not shutil.which("podman"), reason="podman is installed by scripts/setup")

RUN_OPTS = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]


@pytest.fixture
def podman(tmp_path):
    runroot = tempfile.mkdtemp(prefix="lbx-pm-")   # podman wants it < 50 characters
    # Podman 4.3 ignores storage.conf's mount_program once --root is given: the
    # command-line storage option is the one that takes effect.
    base = ["podman", "--root", str(tmp_path / "storage"), "--runroot", runroot,
            "--storage-driver", "overlay",
            "--storage-opt", f"overlay.mount_program={mount_program()}",
            "--cgroup-manager", "cgroupfs", "--events-backend", "none", "--runtime", "runc",
            "--tmpdir", str(tmp_path / "podman-tmp")]

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=300)
        if check:
            assert done.returncode == 0, f"podman {' '.join(args)}: {done.stderr}"
        return done

    try:
        yield run
    finally:
        run("rm", "-a", "-f", check=False)
        run("system", "reset", "-f", check=False)
        shutil.rmtree(runroot, ignore_errors=True)


def _mount_types(mountpoint: str) -> list[str]:
    with open("/proc/self/mountinfo") as info:
        return [line.split(" - ")[1].split()[0] for line in info
                if line.split()[4] == mountpoint]


def test_podman_builds_runs_diffs_and_commits_on_our_mounts(podman, busybox_tar, tmp_path):
    podman("import", str(busybox_tar), "localhost/bb:base")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Containerfile").write_text(
        "FROM localhost/bb:base\n"
        "RUN mkdir -p /data/sub /data/old && echo one > /data/a && echo two > /data/sub/b"
        " && echo x > /data/old/f && ln /data/a /data/a2\n")
    podman("build", *RUN_OPTS, "-q", "-t", "localhost/bb:two", str(ctx))

    cid = podman("run", "-d", *RUN_OPTS, "localhost/bb:two", "sleep", "30").stdout.strip()
    try:
        merged = podman("inspect", "--format", "{{.GraphDriver.Data.MergedDir}}",
                        cid).stdout.strip()
        assert _mount_types(merged) == ["fuse.layerbox-overlayfs"]
    finally:
        podman("rm", "-f", "-t", "0", cid)

    podman("run", *RUN_OPTS, "--name", "c1", "localhost/bb:two", "sh", "-c",
           "echo three >> /data/a && rm /data/sub/b && mv /data/old /data/new"
           " && echo n > /data/new/g && touch /hello")
    changes = set(podman("diff", "c1").stdout.split("\n"))
    for line in ("A /hello", "C /data/a", "D /data/sub/b", "D /data/old", "A /data/new",
                 "A /data/new/f", "A /data/new/g"):
        assert line in changes, (line, sorted(changes))
    podman("commit", "-q", "c1", "localhost/bb:three")
    out = podman("run", "--rm", *RUN_OPTS, "localhost/bb:three", "sh", "-c",
                 "cat /data/a /data/a2 /data/new/f; ls /data; ls -A /data/sub | wc -l;"
                 " [ $(stat -c %i /data/a) = $(stat -c %i /data/a2) ] && echo linked").stdout
    assert out.split() == ["one", "three", "one", "three", "x", "a", "a2", "new", "sub", "0",
                           "linked"]
