"""FUSE passthrough on a real mount: the data of upper files goes between the caller and
the upper file inside the kernel, never through the daemon; lower files, and upper files
still open from before their copy-up, are served by the daemon.

Where the data went is read off the daemon's own I/O counters (/proc/PID/io: rchar
counts what it read from /dev/fuse and from files, wchar what it wrote)."""

from __future__ import annotations

import os

import pytest

from tests.support.fusemount import mounted, overlay_argv

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="passthrough needs CAP_SYS_ADMIN")

MIB = 1 << 20


def _io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {key: int(value) for key, value in (line.split(": ") for line in f)}


@pytest.fixture
def union(tmp_path):
    for name in ("lower", "upper", "work", "mnt"):
        (tmp_path / name).mkdir()
    (tmp_path / "lower" / "big").write_bytes(b"L" * (8 * MIB))
    (tmp_path / "lower" / "small").write_bytes(b"lower\n")
    argv = overlay_argv(tmp_path / "mnt", [tmp_path / "lower"], upper=tmp_path / "upper",
                        work=tmp_path / "work")
    with mounted(argv, tmp_path / "mnt") as m:
        yield tmp_path, m.server_pid()
        m.unmount()


def test_writes_and_reads_of_upper_files_do_not_pass_through_the_daemon(union):
    root, pid = union
    before = _io(pid)
    with open(root / "mnt" / "new", "wb") as f:
        for _ in range(16):
            f.write(b"N" * MIB)
        os.fsync(f.fileno())
    assert (root / "mnt" / "new").read_bytes() == b"N" * (16 * MIB)
    after = _io(pid)
    assert after["rchar"] - before["rchar"] < 2 * MIB   # 16 MiB written, none read by us
    assert after["wchar"] - before["wchar"] < 2 * MIB   # 16 MiB read back, none sent by us
    assert (root / "upper" / "new").stat().st_size == 16 * MIB


def test_lower_files_are_served_by_the_daemon_until_copied_up(union):
    root, pid = union
    before = _io(pid)
    assert (root / "mnt" / "big").read_bytes() == b"L" * (8 * MIB)
    assert _io(pid)["wchar"] - before["wchar"] >= 8 * MIB
    with open(root / "mnt" / "big", "r+b") as f:   # copied up: passthrough from now on
        f.write(b"U")
    before = _io(pid)
    assert (root / "mnt" / "big").read_bytes() == b"U" + b"L" * (8 * MIB - 1)
    assert _io(pid)["wchar"] - before["wchar"] < 2 * MIB


def test_a_file_open_from_before_its_copy_up_reads_the_new_copy(union):
    """The kernel overlay's semantics: the read-only descriptor follows the copy-up. It
    is served by the daemon, and so is the writer while it is open (one I/O mode per
    inode); the next open after both are closed is passthrough again."""
    root, pid = union
    with open(root / "mnt" / "small", "rb") as reader:
        assert reader.read() == b"lower\n"
        with open(root / "mnt" / "small", "r+b") as writer:
            writer.write(b"UPPER\n")
        reader.seek(0)
        assert reader.read() == b"UPPER\n"
    assert (root / "upper" / "small").read_bytes() == b"UPPER\n"
    with open(root / "mnt" / "small", "ab") as appender, \
            open(root / "mnt" / "small", "rb") as reader:
        appender.write(b"more\n")
        appender.flush()
        assert reader.read() == b"UPPER\nmore\n"
    assert (root / "mnt" / "small").stat().st_size == len(b"UPPER\nmore\n")


def test_mmap_of_a_passthrough_file_sees_and_makes_changes(union):
    import mmap
    root, _ = union
    path = root / "mnt" / "mapped"
    path.write_bytes(b"0123456789")
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 10) as mapped:
        assert mapped[:4] == b"0123"
        mapped[:4] = b"abcd"
        mapped.flush()
    assert path.read_bytes() == b"abcd456789"
    assert (root / "upper" / "mapped").read_bytes() == b"abcd456789"


def test_a_reader_and_a_later_writer_share_the_backing_file(union):
    root, pid = union
    path = root / "mnt" / "shared"
    path.write_bytes(b"first\n")
    before = _io(pid)
    with open(path, "rb") as reader, open(path, "r+b") as writer:
        writer.write(b"S" * (4 * MIB))
        writer.flush()
        assert reader.read() == b"S" * (4 * MIB)
    after = _io(pid)
    assert after["rchar"] - before["rchar"] < MIB and after["wchar"] - before["wchar"] < MIB


def _as_nobody(*command: str) -> None:
    import subprocess
    subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command],
                   check=True, timeout=60)


@pytest.mark.parametrize("how", ["append", "truncate"])
def test_set_id_bits_are_cleared_when_someone_else_writes(union, how):
    """A write (passthrough: the kernel's own SETATTR) and an open(O_TRUNC) (done by us)
    by a user without CAP_FSETID drop set-user-id and set-group-id, as on the kernel
    overlay; root's own writes keep them."""
    root, _ = union
    for parent in (root, *root.parents):   # pytest's directories are root's alone
        if parent == parent.parent or parent.stat().st_mode & 0o005 == 0o005:
            break
        os.chmod(parent, parent.stat().st_mode | 0o005)
    path = root / "mnt" / f"setid-{how}"
    path.write_bytes(b"#!/bin/sh\n")
    os.chmod(path, 0o6777)
    with open(path, "ab") as f:
        f.write(b"# root\n")
    assert os.stat(path).st_mode & 0o7777 == 0o6777
    with open(path, "r+b" if how == "append" else "wb") as f:   # root: CAP_FSETID
        f.write(b"#!/bin/sh\n")
    assert os.stat(path).st_mode & 0o7777 == 0o6777
    _as_nobody("sh", "-c", f"echo x >> {path}" if how == "append" else f": > {path}")
    assert os.stat(path).st_mode & 0o7777 == 0o0777
    assert os.stat(root / "upper" / path.name).st_mode & 0o7777 == 0o0777
