"""The OCI spec we hand to runc, and user lookup inside a rootfs (no runc needed)."""

from __future__ import annotations

import os
import resource

import pytest

from cli import runtime
from cli.errors import UserError


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nann:x:1000:1000:Ann:/home/ann:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nann:x:1000:\nwheel:x:10:ann\nstaff:x:50:\n")
    return root


def spec_for(rootfs, tmp_path, **kwargs):
    process = runtime.ProcessSpec(args=["sh"], hostname="box", **kwargs)
    return runtime.build_spec(process, rootfs=rootfs, container_id="c" * 64,
                              etc_dir=tmp_path / "etc")


def test_spec_is_dockers_default(rootfs, tmp_path):
    spec = spec_for(rootfs, tmp_path, env=["FOO=1"], tty=True)
    process = spec["process"]
    assert process["capabilities"]["bounding"] == runtime.DEFAULT_CAPABILITIES
    assert "CAP_SYS_ADMIN" not in process["capabilities"]["effective"]
    assert process["env"] == [f"PATH={runtime.DEFAULT_PATH}", "HOSTNAME=box", "TERM=xterm",
                              "FOO=1", "HOME=/root"]
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} == {
        "pid", "mount", "uts", "ipc", "network"}
    destinations = [m["destination"] for m in spec["mounts"]]
    for path in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                 "/sys/fs/cgroup", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf"):
        assert path in destinations
    sys_mount = spec["mounts"][destinations.index("/sys")]
    assert "ro" in sys_mount["options"]
    assert "/proc/kcore" in spec["linux"]["maskedPaths"]
    assert "/proc/sys" in spec["linux"]["readonlyPaths"]
    assert spec["hostname"] == "box" and spec["root"]["path"] == str(rootfs)
    seccomp = spec["linux"]["seccomp"]
    assert {"mount", "unshare", "keyctl", "ptrace"} <= set(seccomp["syscalls"][0]["names"])


def test_rlimits_never_exceed_the_hard_limits(rootfs, tmp_path):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limit in spec_for(rootfs, tmp_path)["process"]["rlimits"]:
        assert limit["soft"] <= limit["hard"]
        if hard != resource.RLIM_INFINITY:
            assert limit["hard"] <= hard


def test_host_network_shares_the_network_namespace(rootfs, tmp_path):
    spec = spec_for(rootfs, tmp_path, network="host")
    assert "network" not in {ns["type"] for ns in spec["linux"]["namespaces"]}


@pytest.mark.parametrize("user, uid, gid, extra, home", [
    ("", 0, 0, (), "/root"),
    ("ann", 1000, 1000, (10,), "/home/ann"),
    ("1000", 1000, 1000, (10,), "/home/ann"),
    ("ann:staff", 1000, 50, (), "/home/ann"),
    ("4242", 4242, 0, (), "/"),
    ("4242:4343", 4242, 4343, (), "/"),
])
def test_resolve_user(rootfs, user, uid, gid, extra, home):
    assert runtime.resolve_user(rootfs, user) == runtime.ResolvedUser(uid, gid, extra, home)


@pytest.mark.parametrize("user", ["nobody-here", "ann:nogroup"])
def test_unknown_user_is_a_user_error(rootfs, user):
    with pytest.raises(UserError):
        runtime.resolve_user(rootfs, user)


def test_passwd_symlink_never_leaves_the_rootfs(rootfs, tmp_path):
    outside = tmp_path / "outside-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    os.symlink(f"../../../{outside.name}", rootfs / "etc" / "passwd")  # clamps at /
    with pytest.raises(UserError):
        runtime.resolve_user(rootfs, "evil")
    os.unlink(rootfs / "etc" / "passwd")
    os.symlink(str(outside), rootfs / "etc" / "passwd")            # absolute: inside root
    with pytest.raises(UserError):
        runtime.resolve_user(rootfs, "evil")


def test_etc_files(tmp_path):
    runtime.write_etc_files(tmp_path, hostname="box", network="private")
    assert (tmp_path / "hostname").read_text() == "box\n"
    assert "127.0.1.1\tbox" in (tmp_path / "hosts").read_text()
    assert (tmp_path / "resolv.conf").exists()
