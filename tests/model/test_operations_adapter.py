"""The pyfuse3 adapter called directly (no kernel, no mount): names and inodes in,
EntryAttributes / FileInfo / FUSEError out, and errno mapping in one place."""

from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pyfuse3
import pytest
import trio

from overlayfs.config import MountConfig
from overlayfs.operations import build
from tests.support.overlay import Dir, File, build_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and chown need root")

ROOT = pyfuse3.ROOT_INODE
CTX = SimpleNamespace(uid=0, gid=0, pid=os.getpid(), umask=0o022)


@pytest.fixture
def ops(tmp_path):
    lower = build_layer(tmp_path / "lower", {"f": File(b"lower data", mode=0o600, uid=3),
                                             "d": Dir(), "d/x": File(b"x")})
    for name in ("upper", "work"):
        (tmp_path / name).mkdir()
    config = MountConfig(mountpoint=str(tmp_path / "mnt"), lowers=(str(lower),),
                         upper=str(tmp_path / "upper"), work=str(tmp_path / "work"))
    umask = os.umask(0o022)
    try:
        operations, options = build(config)
    finally:
        os.umask(umask)
    operations.mount_options = options
    operations.upper = tmp_path / "upper"
    yield operations
    operations.union.close()


def call(method, *args):
    return trio.run(method, *args)


def errno_of(method, *args) -> int:
    with pytest.raises(pyfuse3.FUSEError) as exc:
        call(method, *args)
    return exc.value.errno


def test_lookup_gives_attributes_and_caches_missing_names(ops):
    attr = call(ops.lookup, ROOT, b"f", CTX)
    assert (attr.st_size, attr.st_mode & 0o777, attr.st_uid) == (10, 0o600, 3)
    assert attr.st_ino != ROOT and attr.entry_timeout > 0
    missing = call(ops.lookup, ROOT, b"nothing", CTX)
    assert missing.st_ino == 0 and missing.entry_timeout > 0   # a negative entry
    assert call(ops.getattr, attr.st_ino, CTX).st_ino == attr.st_ino


def test_errors_become_fuse_errors_with_the_right_errno(ops):
    assert errno_of(ops.lookup, ROOT, b"n" * 256, CTX) == errno.ENAMETOOLONG
    assert errno_of(ops.mkdir, ROOT, b"d", 0o755, CTX) == errno.EEXIST
    assert errno_of(ops.rmdir, ROOT, b"d", CTX) == errno.ENOTEMPTY
    assert errno_of(ops.unlink, ROOT, b"nothing", CTX) == errno.ENOENT
    d = call(ops.lookup, ROOT, b"d", CTX)
    assert errno_of(ops.link, d.st_ino, ROOT, b"d2", CTX) == errno.EPERM
    assert errno_of(ops.getattr, 999_999, CTX) == errno.ENOENT    # an unknown inode


def test_create_write_read_and_copy_up_through_handles(ops):
    info, attr = call(ops.create, ROOT, b"new", 0o644, os.O_RDWR, CTX)
    assert isinstance(info, pyfuse3.FileInfo)
    assert call(ops.write, info.fh, 0, b"abc") == 3
    assert call(ops.read, info.fh, 0, 10) == b"abc"
    call(ops.release, info.fh)
    assert (ops.upper / "new").read_bytes() == b"abc"
    f = call(ops.lookup, ROOT, b"f", CTX)
    info = call(ops.open, f.st_ino, os.O_WRONLY, CTX)
    call(ops.write, info.fh, 0, b"UPPER")
    call(ops.release, info.fh)
    assert (ops.upper / "f").read_bytes() == b"UPPER data"


def test_setattr_xattrs_rename_and_statfs(ops):
    f = call(ops.lookup, ROOT, b"f", CTX)
    fields = SimpleNamespace(update_mode=True, update_uid=False, update_gid=False,
                             update_size=True, update_atime=False, update_mtime=False)
    new = pyfuse3.EntryAttributes()
    new.st_mode, new.st_size = 0o100640, 4
    attr = call(ops.setattr, f.st_ino, new, fields, None, CTX)
    assert (attr.st_mode & 0o777, attr.st_size) == (0o640, 4)
    call(ops.setxattr, f.st_ino, b"user.note", b"1", CTX)
    assert call(ops.getxattr, f.st_ino, b"user.note", CTX) == b"1"
    assert b"user.note" in call(ops.listxattr, f.st_ino, CTX)
    call(ops.removexattr, f.st_ino, b"user.note", CTX)
    assert errno_of(ops.getxattr, f.st_ino, b"user.note", CTX) == errno.ENODATA
    call(ops.rename, ROOT, b"d", ROOT, b"moved", 0, CTX)
    assert call(ops.lookup, ROOT, b"d", CTX).st_ino == 0
    assert call(ops.lookup, ROOT, b"moved", CTX).st_ino != 0
    assert call(ops.statfs, CTX).f_namemax >= 255


def test_mount_options_follow_the_config(ops, tmp_path):
    assert "default_permissions" in ops.mount_options
    assert any(o.startswith("fsname=") for o in ops.mount_options)
    read_only = MountConfig(mountpoint=str(tmp_path / "m2"),
                            lowers=(str(tmp_path / "lower"),))
    ro_ops, options = build(read_only)
    try:
        assert "ro" in options
        f = call(ro_ops.lookup, ROOT, b"f", CTX)
        assert errno_of(ro_ops.open, f.st_ino, os.O_WRONLY, CTX) == errno.EROFS
    finally:
        ro_ops.union.close()


def _fds_under(path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(f"{path}/"):
            found.append(target)
    return found


def test_close_releases_every_fd_on_the_layers(ops, tmp_path):
    """The daemon calls it as soon as the FUSE loop ends: umount(8) returns before the
    daemon exits, and an fd left on a layer kept its file system busy (fuse-overlayfs'
    test-passthrough.sh and test-mmap.sh unmount the layers' file systems right after)."""
    f = call(ops.lookup, ROOT, b"f", CTX)
    call(ops.open, f.st_ino, os.O_RDONLY, CTX)
    assert _fds_under(tmp_path)
    ops.close()
    assert _fds_under(tmp_path) == []
    ops.close()  # and the fixture's close() after it: closing twice is harmless
