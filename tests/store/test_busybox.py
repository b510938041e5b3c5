import io
import tarfile

from cli.busybox import write_busybox_rootfs_tar


def test_deterministic_and_complete():
    a, b = io.BytesIO(), io.BytesIO()
    write_busybox_rootfs_tar(a)
    write_busybox_rootfs_tar(b)
    assert a.getvalue() == b.getvalue()
    a.seek(0)
    with tarfile.open(fileobj=a) as tar:
        members = {m.name: m for m in tar.getmembers()}
    names = list(members)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "/bin/busybox"
    assert members["tmp"].mode == 0o1777
    for path in ("etc/passwd", "etc/group", "etc/motd", "root", "proc", "sys", "dev", "home",
                 "var", "usr/bin", "usr/sbin", "sbin"):
        assert path in members
