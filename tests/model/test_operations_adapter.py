"""The FUSE adapter called directly (no kernel, no mount): request bodies in, as
/dev/fuse carries them; reply payloads or OSError out, and errno mapping in one place."""

from __future__ import annotations

import errno
import os

import pytest

from overlayfs import fuse_abi as abi
from overlayfs.config import MountConfig
from overlayfs.operations import build
from tests.support.overlay import Dir, File, build_layer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts and chown need root")

ROOT = abi.ROOT_ID


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


def call(ops, name: str, nodeid: int, body: bytes = b"", uid: int = 0, gid: int = 0) -> bytes:
    """Answer one request as the session would hand it over; the reply's payload."""
    header = (40 + len(body), 0, 1, nodeid, uid, gid, os.getpid(), 0, 0)
    reply = getattr(ops, "op_" + name)(nodeid, memoryview(body), header)
    if isinstance(reply, list):
        return b"".join(bytes(piece) for piece in reply)
    return b"" if reply is None else bytes(reply)


def errno_of(ops, name: str, nodeid: int, body: bytes = b"") -> int:
    with pytest.raises(OSError) as exc:
        call(ops, name, nodeid, body)
    return exc.value.errno


def entry(reply: bytes) -> dict:
    fields = abi.ENTRY_OUT.unpack_from(reply)
    return {"nodeid": fields[0], "entry_valid": fields[2], "size": fields[7],
            "mode": fields[15], "uid": fields[17]}


def attr(reply: bytes) -> dict:
    fields = abi.ATTR_OUT.unpack_from(reply)
    return {"ino": fields[3], "size": fields[4], "mode": fields[12]}


def lookup(ops, parent: int, name: bytes) -> dict:
    return entry(call(ops, "lookup", parent, name + b"\0"))


def opened(ops, nodeid: int, flags: int) -> int:
    return abi.OPEN_OUT.unpack_from(call(ops, "open", nodeid, abi.OPEN_IN.pack(flags, 0)))[0]


def write(ops, fh: int, offset: int, data: bytes) -> int:
    body = abi.WRITE_IN.pack(fh, offset, len(data), 0, 0, 0, 0) + data
    return abi.WRITE_OUT.unpack(call(ops, "write", 0, body))[0]


def read(ops, fh: int, offset: int, size: int) -> bytes:
    return call(ops, "read", 0, abi.READ_IN.pack(fh, offset, size, 0) + bytes(16))


def release(ops, fh: int) -> None:
    call(ops, "release", 0, abi.RELEASE_IN.pack(fh, 0, 0) + bytes(8))


def test_lookup_gives_attributes_and_caches_missing_names(ops):
    f = lookup(ops, ROOT, b"f")
    assert (f["size"], f["mode"] & 0o777, f["uid"]) == (10, 0o600, 3)
    assert f["nodeid"] != ROOT and f["entry_valid"] > 0
    missing = lookup(ops, ROOT, b"nothing")
    assert missing["nodeid"] == 0 and missing["entry_valid"] > 0   # a negative entry
    assert attr(call(ops, "getattr", f["nodeid"], bytes(16)))["ino"] == f["nodeid"]


def test_errors_are_oserrors_with_the_right_errno(ops):
    assert errno_of(ops, "lookup", ROOT, b"n" * 256 + b"\0") == errno.ENAMETOOLONG
    assert errno_of(ops, "mkdir", ROOT, abi.MKDIR_IN.pack(0o755, 0) + b"d\0") == errno.EEXIST
    assert errno_of(ops, "rmdir", ROOT, b"d\0") == errno.ENOTEMPTY
    assert errno_of(ops, "unlink", ROOT, b"nothing\0") == errno.ENOENT
    d = lookup(ops, ROOT, b"d")
    assert errno_of(ops, "link", ROOT, abi.LINK_IN.pack(d["nodeid"]) + b"d2\0") == errno.EPERM
    with pytest.raises(KeyError) as unknown:   # an unknown inode: failed() answers ENOENT
        call(ops, "getattr", 999_999, bytes(16))
    assert ops.failed(abi.GETATTR, unknown.value) == errno.ENOENT


def test_create_write_read_and_copy_up_through_handles(ops):
    reply = call(ops, "create", ROOT, abi.CREATE_IN.pack(os.O_RDWR, 0o100644, 0, 0) + b"new\0")
    new = entry(reply)
    fh, open_flags, backing = abi.OPEN_OUT.unpack_from(reply, abi.ENTRY_OUT.size)
    assert new["nodeid"] and backing == 0   # no session: served by us
    assert write(ops, fh, 0, b"abc") == 3
    assert read(ops, fh, 0, 10) == b"abc"
    release(ops, fh)
    assert (ops.upper / "new").read_bytes() == b"abc"
    f = lookup(ops, ROOT, b"f")
    fh = opened(ops, f["nodeid"], os.O_WRONLY)
    write(ops, fh, 0, b"UPPER")
    release(ops, fh)
    assert (ops.upper / "f").read_bytes() == b"UPPER data"


def test_setattr_xattrs_rename_and_statfs(ops):
    f = lookup(ops, ROOT, b"f")["nodeid"]
    body = abi.SETATTR_IN.pack(abi.FATTR_MODE | abi.FATTR_SIZE, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0,
                               0o100640, 0, 0, 0, 0)
    changed = attr(call(ops, "setattr", f, body))
    assert (changed["mode"] & 0o777, changed["size"]) == (0o640, 4)
    call(ops, "setxattr", f, abi.XATTR_SIZE.pack(1, 0) + b"user.note\0" + b"1")
    asked = abi.XATTR_SIZE.pack(0, 0) + b"user.note\0"
    assert abi.XATTR_SIZE.unpack(call(ops, "getxattr", f, asked))[0] == 1   # size 0: the length
    assert call(ops, "getxattr", f, abi.XATTR_SIZE.pack(64, 0) + b"user.note\0") == b"1"
    assert errno_of(ops, "getxattr", f, abi.XATTR_SIZE.pack(0, 0) + b"user.nothing\0") \
        == errno.ENODATA
    listed = call(ops, "listxattr", f, abi.XATTR_SIZE.pack(1024, 0))
    assert b"user.note\0" in listed
    assert errno_of(ops, "listxattr", f, abi.XATTR_SIZE.pack(1, 0)) == errno.ERANGE
    call(ops, "removexattr", f, b"user.note\0")
    assert errno_of(ops, "getxattr", f, asked) == errno.ENODATA
    call(ops, "rename", ROOT, abi.RENAME_IN.pack(ROOT) + b"d\0moved\0")
    assert lookup(ops, ROOT, b"d")["nodeid"] == 0
    assert lookup(ops, ROOT, b"moved")["nodeid"] != 0
    statfs = abi.STATFS_OUT.unpack(call(ops, "statfs", ROOT))
    assert statfs[6] >= 255   # namelen


def test_readdirplus_fits_the_buffer_and_counts_what_it_sends(ops):
    d = lookup(ops, ROOT, b"d")["nodeid"]
    fh = abi.OPEN_OUT.unpack(call(ops, "opendir", d, abi.OPEN_IN.pack(0, 0)))[0]
    listing = call(ops, "readdirplus", d, abi.READ_IN.pack(fh, 0, 4096, 0) + bytes(16))
    names, offset = [], 0
    while offset < len(listing):
        fields = abi.DIRENT_PLUS.unpack_from(listing, offset)
        namelen = fields[-2]
        start = offset + abi.DIRENT_PLUS.size
        names.append((listing[start:start + namelen], fields[0] != 0))
        offset = start + (namelen + 7) // 8 * 8
    assert names == [(b".", False), (b"..", False), (b"x", True)]   # dots carry no entry
    x = ops.union.nodes.get(lookup(ops, d, b"x")["nodeid"])
    assert x.lookups == 2   # one for the readdirplus entry, one for the lookup
    one = call(ops, "readdirplus", d, abi.READ_IN.pack(fh, 0, 60, 0) + bytes(16))
    assert one == b""   # not even "." fits in 60 bytes
    call(ops, "releasedir", d, abi.RELEASE_IN.pack(fh, 0, 0) + bytes(8))


@pytest.mark.parametrize("pid, kept", [(0, False), (os.getpid(), True)])
def test_open_with_o_trunc_drops_set_id_bits_unless_the_caller_has_cap_fsetid(ops, pid, kept):
    """PID 0: a caller we cannot see (another pid namespace) counts as without it."""
    reply = call(ops, "create", ROOT, abi.CREATE_IN.pack(os.O_RDWR, 0o106755, 0, 0) + b"s\0")
    new, fh = entry(reply)["nodeid"], abi.OPEN_OUT.unpack_from(reply, abi.ENTRY_OUT.size)[0]
    release(ops, fh)
    os.chmod(ops.upper / "s", 0o6755)
    header_body = abi.OPEN_IN.pack(os.O_WRONLY | os.O_TRUNC, 0)
    reply = ops.op_open(new, memoryview(header_body), (48, abi.OPEN, 1, new, 1000, 1000, pid, 0, 0))
    release(ops, abi.OPEN_OUT.unpack_from(reply)[0])
    assert (ops.upper / "s").stat().st_mode & 0o7777 == (0o6755 if kept else 0o0755)


def test_mount_options_follow_the_config(ops, tmp_path):
    assert "default_permissions" in ops.mount_options
    assert any(o.startswith("fsname=") for o in ops.mount_options)
    read_only = MountConfig(mountpoint=str(tmp_path / "m2"),
                            lowers=(str(tmp_path / "lower"),))
    ro_ops, options = build(read_only)
    try:
        assert "ro" in options and not ro_ops.enable_passthrough
        f = lookup(ro_ops, ROOT, b"f")["nodeid"]
        assert errno_of(ro_ops, "open", f, abi.OPEN_IN.pack(os.O_WRONLY, 0)) == errno.EROFS
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
    opened(ops, lookup(ops, ROOT, b"f")["nodeid"], os.O_RDONLY)
    assert _fds_under(tmp_path)
    ops.close()
    assert _fds_under(tmp_path) == []
    ops.close()  # and the fixture's close() after it: closing twice is harmless
