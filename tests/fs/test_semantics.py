"""Union semantics on real mounts (spec/union-fs.md section 3): lookup, whiteouts,
opaque directories, readdir, copy-up, deletion. Every test runs on the kernel overlay
(the oracle: expectations were taken from what it does) and on the program under test.
"""

import errno
import os
import stat
import subprocess

import pytest

from tests.support.overlay import (KERNEL, Device, Dir, Fifo, File, HardLink, Symlink,
                                   Whiteout, snapshot, upper_kinds, visible_xattrs,
                                   whiteout_in_upper)


def _raw_listing(path) -> list[str]:
    """Directory entries in the order getdents returns them, . and .. included."""
    out = subprocess.run(["ls", "-a", "-f", "-1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return out.splitlines()


# ---------------------------------------------------------------- lookup

def test_lookup_takes_the_topmost_layer(union):
    u = union({"a": File(b"top"), "d/x": File(b"top-x")},
              {"a": File(b"bottom"), "b": File(b"bottom-b"), "d/x": File(b"bx"),
               "d/y": File(b"by")},
              upper={"d/x": File(b"upper-x")})
    assert (u.mnt / "a").read_bytes() == b"top"
    assert (u.mnt / "b").read_bytes() == b"bottom-b"
    assert (u.mnt / "d/x").read_bytes() == b"upper-x"
    assert (u.mnt / "d/y").read_bytes() == b"by"


def test_a_file_in_a_higher_layer_hides_a_directory_below(union):
    u = union({"d": File(b"file now")}, {"d/inner": File(b"x")})
    assert (u.mnt / "d").read_bytes() == b"file now"
    with pytest.raises(NotADirectoryError):
        os.stat(u.mnt / "d/inner")
    assert sorted(os.listdir(u.mnt)) == ["d"]


def _check_whiteouts_hide_entries(union, form):
    u = union({"gone": Whiteout(form), "d/gone": Whiteout(form), "dd": Whiteout(form)},
              {"gone": File(b"x"), "kept": File(b"k"), "d/gone": File(b"y"),
               "d/kept": File(b"z"), "dd/child": File(b"c")})
    assert sorted(os.listdir(u.mnt)) == ["d", "kept"]
    assert sorted(os.listdir(u.mnt / "d")) == ["kept"]
    for rel in ("gone", "d/gone", "dd", "dd/child"):
        assert not os.path.lexists(u.mnt / rel), rel
    # A whited-out name can be created again.
    (u.mnt / "gone").write_bytes(b"new")
    assert (u.mnt / "gone").read_bytes() == b"new"


def test_device_whiteouts_in_lowers_hide_entries(union, known_difference):
    _check_whiteouts_hide_entries(union, "chardev")


@pytest.mark.program_only  # the kernel overlay reads only 0:0 device whiteouts
def test_wh_file_whiteouts_in_lowers_hide_entries(union, known_difference):
    _check_whiteouts_hide_entries(union, "file")


def _check_opaque_directory_hides_everything_below(union, form):
    u = union({"d": Dir(opaque=form), "d/new": File(b"n")},
              {"d/old": File(b"o"), "d/sub/deep": File(b"x"), "other": File(b"")})
    assert sorted(os.listdir(u.mnt / "d")) == ["new"]
    assert not os.path.lexists(u.mnt / "d/old")
    assert not os.path.lexists(u.mnt / "d/sub")
    assert sorted(os.listdir(u.mnt)) == ["d", "other"]


def test_trusted_opaque_directories_hide_everything_below(union):
    _check_opaque_directory_hides_everything_below(union, "trusted")


@pytest.mark.program_only  # the kernel overlay (without userxattr) reads trusted.overlay.opaque only
@pytest.mark.parametrize("form", ["user", "fuseoverlayfs", "marker"])
def test_other_opaque_forms_hide_everything_below(union, form):
    _check_opaque_directory_hides_everything_below(union, form)


@pytest.mark.program_only  # .wh. names are ordinary names to the kernel overlay
def test_bookkeeping_names_are_never_visible(union):
    u = union({"d": Dir(opaque="marker"), "x": Whiteout("file")}, {"x": File(b""), "d/a": File()})
    for path in (u.mnt, u.mnt / "d"):
        assert not [n for n in os.listdir(path) if n.startswith(".wh.")]
    assert not os.path.lexists(u.mnt / ".wh.x")


# ---------------------------------------------------------------- readdir

def test_readdir_is_the_deduplicated_union_with_dot_entries(union, impl, known_difference):
    u = union({"d/b": File(), "d/a": File(), "d/gone": Whiteout()},
              {"d/c": File(), "d/a": File(), "d/gone": File(), "d/sub/x": File()},
              upper={"d/e": File(), "d/c": File(b"upper")})
    known_difference("the root directory lists no '..'; order follows the layers")
    for path, names in ((u.mnt, ["d"]), (u.mnt / "d", ["a", "b", "c", "e", "sub"]),
                        (u.mnt / "d/sub", ["x"])):
        listing = _raw_listing(path)
        assert sorted(listing) == sorted([".", "..", *names]), path
        if impl != KERNEL:
            rest = [n for n in listing if n not in (".", "..")]
            assert rest == sorted(rest), f"{path}: unsorted {listing}"


def test_st_ino_is_the_same_in_stat_and_readdir(union):
    u = union({"d/a": File(), "d/b": Symlink("a"), "top": File()},
              {"d/c": File(), "d/sub/x": File(), "bottom": File(), "hl": File(),
               "hl2": HardLink("hl")},
              upper={"d/up": File(), "up": Dir()})
    (u.mnt / "d/c").write_bytes(b"copied up")
    for dirpath in (u.mnt, u.mnt / "d", u.mnt / "d/sub"):
        with os.scandir(dirpath) as it:
            for entry in it:
                assert entry.inode() == os.lstat(entry.path).st_ino, entry.path
    assert os.lstat(u.mnt / "hl").st_ino == os.lstat(u.mnt / "hl2").st_ino
    assert os.lstat(u.mnt / "hl").st_nlink == 2
    inodes = [os.lstat(p).st_ino for p in (u.mnt / "d/a", u.mnt / "d/c", u.mnt / "bottom",
                                           u.mnt / "top", u.mnt / "up", u.mnt / "d")]
    assert len(set(inodes)) == len(inodes)


def test_st_ino_is_the_backing_files_when_all_layers_share_a_file_system(union):
    """fuse-overlayfs' tests/test-passthrough.sh: with every layer on one file system
    the kernel overlay passes the real inode numbers through (``ls -i`` inside and
    outside the mount agree), in stat and in readdir."""
    u = union({"dir/lower": File(), "dir/dirl": Dir()},
              upper={"dir/upper": File(), "dir/diru": Dir()})
    for rel, layer in (("dir/lower", u.lowers[0]), ("dir/dirl", u.lowers[0]),
                       ("dir/upper", u.upper), ("dir/diru", u.upper)):
        assert os.lstat(u.mnt / rel).st_ino == os.lstat(layer / rel).st_ino, rel
    with os.scandir(u.mnt / "dir") as it:
        for entry in it:
            assert entry.inode() == os.lstat(entry.path).st_ino, entry.path


# ---------------------------------------------------------------- copy-up

_OWNED = File(b"0123456789", mode=0o640, uid=1234, gid=2345, mtime=1_500_000_000,
              xattrs={"user.note": b"kept", "user.other": b"2"})


@pytest.mark.parametrize("change", ["append", "setxattr", "chmod", "link"])
def test_copy_up_keeps_content_mode_owner_times_and_xattrs(union, change):
    u = union({"dir/f": _OWNED, "dir": Dir(mode=0o750, uid=7, gid=8)})
    path = u.mnt / "dir/f"
    expected_mode, expected_content = 0o640, b"0123456789"
    if change == "append":
        with open(path, "ab") as f:
            f.write(b"+")
        expected_content += b"+"
    elif change == "setxattr":
        os.setxattr(path, "user.added", b"a")
    elif change == "chmod":
        os.chmod(path, 0o600)
        expected_mode = 0o600
    else:
        os.link(path, u.mnt / "dir/f2")
    for root in (u.mnt, u.upper):
        st = os.lstat(root / "dir/f")
        assert stat.S_IMODE(st.st_mode) == expected_mode, root
        assert (st.st_uid, st.st_gid) == (1234, 2345), root
        assert (root / "dir/f").read_bytes() == expected_content, root
        xattrs = dict(visible_xattrs(root / "dir/f"))
        assert xattrs["user.note"] == b"kept" and xattrs["user.other"] == b"2", root
        if change != "append":
            assert st.st_mtime_ns == 1_500_000_000 * 10**9, root
        parent = os.lstat(root / "dir")
        assert (stat.S_IMODE(parent.st_mode), parent.st_uid, parent.st_gid) == (0o750, 7, 8)


def test_symlink_copy_up_keeps_owner(union, known_difference):
    known_difference("a symlink's copy-up loses its group")
    u = union({"l": Symlink("target", uid=55, gid=66)})
    os.chown(u.mnt / "l", 77, -1, follow_symlinks=False)
    st = os.lstat(u.upper / "l")
    assert stat.S_ISLNK(st.st_mode) and (st.st_uid, st.st_gid) == (77, 66)
    assert os.readlink(u.mnt / "l") == "target"


@pytest.mark.parametrize("entry", [Fifo(), Device(char=True, rdev=(1, 3)),
                                   Device(char=False, rdev=(7, 0))],
                         ids=["fifo", "chardev", "blockdev"])
def test_special_files_stay_special_after_chmod(union, entry, known_difference):
    known_difference("copy-up turns FIFOs and devices into regular files")
    u = union({"node": entry})
    before = os.lstat(u.mnt / "node")
    os.chmod(u.mnt / "node", 0o600)
    for root in (u.mnt, u.upper):
        st = os.lstat(root / "node")
        assert stat.S_IFMT(st.st_mode) == stat.S_IFMT(before.st_mode), root
        assert st.st_rdev == before.st_rdev and stat.S_IMODE(st.st_mode) == 0o600


def test_truncate_utimes_chown_on_lower_files(union):
    u = union({"a": File(b"abcdef"), "b": File(b"xy"), "c": File(b"c", uid=1, gid=1),
               "t": File(b"t")})
    os.truncate(u.mnt / "a", 3)
    os.truncate(u.mnt / "b", 5)
    os.chown(u.mnt / "c", 1000, 1001)
    os.utime(u.mnt / "t", ns=(1_000_000_001_000_000_000, 1_100_000_002_000_000_000))
    assert (u.mnt / "a").read_bytes() == b"abc"
    assert (u.mnt / "b").read_bytes() == b"xy\0\0\0"
    st = os.stat(u.mnt / "c")
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    st = os.stat(u.mnt / "t")
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_001_000_000_000,
                                                1_100_000_002_000_000_000)
    assert sorted(upper_kinds(u.upper)) == ["a", "b", "c", "t"]
    assert os.stat(u.upper / "t").st_mtime_ns == 1_100_000_002_000_000_000


def test_read_only_open_with_o_trunc_truncates_and_copies_up(union):
    # Linux truncates on O_RDONLY|O_TRUNC (found by unionmount-testsuite open-trunc).
    u = union({"f": File(b"data"), "g": File(b"keep")})
    fd = os.open(u.mnt / "f", os.O_RDONLY | os.O_TRUNC)
    try:
        assert os.fstat(fd).st_size == 0
        assert os.read(fd, 16) == b""
        with pytest.raises(OSError) as exc:
            os.write(fd, b"x")
        assert exc.value.errno == errno.EBADF
    finally:
        os.close(fd)
    assert (u.mnt / "f").read_bytes() == b""
    assert (u.upper / "f").read_bytes() == b""
    assert (u.mnt / "g").read_bytes() == b"keep"
    assert sorted(upper_kinds(u.upper)) == ["f"]


def test_chown_chmod_utimes_of_the_mount_root(union):
    """Podman chowns every container's rootfs (the mountpoint) before starting it; the
    root has no name, and setattr refused it with ENOENT, so `podman run` failed."""
    u = union({"f": File(b"f")})
    os.chown(u.mnt, 12, 34)
    os.chmod(u.mnt, 0o711)
    os.utime(u.mnt, ns=(1_000_000_001_000_000_000, 1_100_000_002_000_000_000))
    for root in (u.mnt, u.upper):
        st = os.stat(root)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), st.st_mtime_ns) == \
            (12, 34, 0o711, 1_100_000_002_000_000_000), root


def test_mmap_write_then_read(union):
    import mmap
    u = union({"f": File(b"hello world\n")})
    with open(u.mnt / "f", "r+b") as f:
        with mmap.mmap(f.fileno(), 0) as m:
            m[0:5] = b"HELLO"
            m.flush()
    assert (u.mnt / "f").read_bytes() == b"HELLO world\n"
    assert (u.upper / "f").read_bytes() == b"HELLO world\n"


# ---------------------------------------------------------------- deletion

def test_unlink_and_rmdir_of_lower_entries_leave_only_whiteouts(union):
    u = union({"dir/f": File(b"x" * 100_000), "empty": Dir(), "top": File()},
              {"bottom": File(), "dir/g": File()})
    os.unlink(u.mnt / "dir/f")
    os.unlink(u.mnt / "bottom")
    os.rmdir(u.mnt / "empty")
    assert sorted(os.listdir(u.mnt)) == ["dir", "top"]
    assert os.listdir(u.mnt / "dir") == ["g"]
    assert upper_kinds(u.upper) == {"dir": "dir", "dir/f": "whiteout", "bottom": "whiteout",
                                    "empty": "whiteout"}
    for rel in ("dir/f", "bottom", "empty"):
        st = os.lstat(u.upper / rel)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, rel


def test_rmdir_of_a_merged_non_empty_directory_fails(union):
    u = union({"d/a": File()}, {"d/b": File(), "e/only_lower": File()})
    for rel in ("d", "e"):
        with pytest.raises(OSError) as info:
            os.rmdir(u.mnt / rel)
        assert info.value.errno == errno.ENOTEMPTY
    os.unlink(u.mnt / "d/a")
    with pytest.raises(OSError) as info:
        os.rmdir(u.mnt / "d")
    assert info.value.errno == errno.ENOTEMPTY
    os.unlink(u.mnt / "d/b")
    os.rmdir(u.mnt / "d")
    assert not os.path.lexists(u.mnt / "d")
    assert whiteout_in_upper(u.upper, "d")


def test_rm_rf_then_mkdir_gives_an_empty_opaque_directory(union, known_difference):
    known_difference("stale lower children show after rm -rf d; mkdir d")
    u = union({"d/a": File(), "d/sub/b": File()}, {"d/c": File(), "d/sub/e": File()})
    subprocess.run(["rm", "-rf", str(u.mnt / "d")], check=True)
    os.mkdir(u.mnt / "d")
    assert os.listdir(u.mnt / "d") == []
    assert os.getxattr(u.upper / "d", "trusted.overlay.opaque") == b"y"
    (u.mnt / "d/sub").mkdir()
    assert os.listdir(u.mnt / "d/sub") == []


def test_open_unlinked_file_has_no_links(union, known_difference):
    known_difference("fstat of an open file whose name was removed says st_nlink 1")
    u = union({"lower": File(b"L")})
    (u.mnt / "new").write_bytes(b"N")
    for name, content in (("lower", b"L"), ("new", b"N")):
        fd = os.open(u.mnt / name, os.O_RDWR)
        try:
            os.unlink(u.mnt / name)
            assert os.fstat(fd).st_nlink == 0, name
            assert os.pread(fd, 10, 0) == content
            os.pwrite(fd, b"more", 1)
            assert os.pread(fd, 10, 0) == content + b"more"
        finally:
            os.close(fd)
        assert not os.path.lexists(u.mnt / name)


# ---------------------------------------------------------------- hard links

def test_hard_link_to_a_lower_file_shares_one_inode(union):
    u = union({"d/f": File(b"data")})
    os.link(u.mnt / "d/f", u.mnt / "g")
    os.link(u.mnt / "g", u.mnt / "d/h")
    names = [u.mnt / "d/f", u.mnt / "g", u.mnt / "d/h"]
    stats = [os.lstat(p) for p in names]
    assert len({st.st_ino for st in stats}) == 1
    assert [st.st_nlink for st in stats] == [3, 3, 3]
    with open(u.mnt / "g", "ab") as f:
        f.write(b"!")
    assert (u.mnt / "d/h").read_bytes() == b"data!"
    os.unlink(u.mnt / "d/f")
    assert os.lstat(u.mnt / "g").st_nlink == 2
    # The upper holds one file with every remaining name.
    assert os.lstat(u.upper / "g").st_ino == os.lstat(u.upper / "d/h").st_ino
