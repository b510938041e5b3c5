"""Renames, name limits, xattrs, statfs, read-only mounts and permission checks on real
union mounts; expectations are what the kernel overlay does (spec/union-fs.md §3)."""

import errno
import os
import stat
import subprocess

import pytest

from tests.support.overlay import (KERNEL, RENAME_EXCHANGE, RENAME_NOREPLACE, Dir, File,
                                   HardLink, Symlink, Whiteout, renameat2, snapshot, upper_kinds,
                                   visible_xattrs, whiteout_in_upper)


def _errno_of(call, *args, **kwargs) -> int:
    try:
        call(*args, **kwargs)
    except OSError as exc:
        return exc.errno
    return 0


# ---------------------------------------------------------------- rename

_TREE = {"d/a": File(b"a"), "d/sub/b": File(b"b"), "d/l": Symlink("a"), "f": File(b"f"),
         "empty": Dir()}


def test_rename_a_lower_directory_moves_its_whole_tree(union, known_difference):
    known_difference("EXDEV when renaming a directory from a lower layer")
    u = union(_TREE, {"d/deep/x": File(b"x")}, redirect_dir=True)
    before = snapshot(u.mnt / "d")
    os.rename(u.mnt / "d", u.mnt / "moved")
    assert not os.path.lexists(u.mnt / "d")
    assert snapshot(u.mnt / "moved") == before
    assert whiteout_in_upper(u.upper, "d")
    # The old name is free and shows nothing of the old tree.
    os.mkdir(u.mnt / "d")
    assert os.listdir(u.mnt / "d") == []
    # Renamed again, and back to the original name.
    os.rename(u.mnt / "moved", u.mnt / "empty/again")
    assert snapshot(u.mnt / "empty/again") == before
    os.rmdir(u.mnt / "d")
    os.rename(u.mnt / "empty/again", u.mnt / "d")
    assert snapshot(u.mnt / "d") == before


def test_rename_files_within_and_across_layers(union):
    u = union({"top": File(b"T"), "d/x": File(b"X")}, {"bottom": File(b"B"), "d/y": File(b"Y")},
              upper={"up": File(b"U")})
    os.rename(u.mnt / "bottom", u.mnt / "d/bottom2")
    os.rename(u.mnt / "d/x", u.mnt / "top")       # over an existing lower file
    os.rename(u.mnt / "up", u.mnt / "d/y")        # upper file over a lower file
    assert sorted(os.listdir(u.mnt)) == ["d", "top"]
    assert sorted(os.listdir(u.mnt / "d")) == ["bottom2", "y"]
    assert (u.mnt / "top").read_bytes() == b"X"
    assert (u.mnt / "d/y").read_bytes() == b"U"
    assert (u.mnt / "d/bottom2").read_bytes() == b"B"
    for rel in ("bottom", "d/x"):
        assert whiteout_in_upper(u.upper, rel), rel


def test_rename_errors(union, known_difference):
    known_difference("EXDEV when renaming a directory from a lower layer")
    u = union({"f": File(), "g": File(), "d/x": File(), "e": Dir(), "full/y": File()},
              upper={"u": Dir()}, redirect_dir=True)
    assert _errno_of(os.rename, u.mnt / "d", u.mnt / "full") == errno.ENOTEMPTY
    assert _errno_of(os.rename, u.mnt / "f", u.mnt / "e") == errno.EISDIR
    assert _errno_of(os.rename, u.mnt / "u", u.mnt / "f") == errno.ENOTDIR
    assert _errno_of(os.rename, u.mnt / "u", u.mnt / "u/inside") == errno.EINVAL
    assert _errno_of(os.rename, u.mnt / "nothing", u.mnt / "x") == errno.ENOENT
    os.rename(u.mnt / "u", u.mnt / "e")             # an upper dir over an empty lower dir
    assert os.listdir(u.mnt / "e") == []


def test_rename_noreplace(union):
    u = union({"a": File(b"a"), "b": File(b"b"), "gone": Whiteout()}, {"gone": File(b"old")})
    assert _errno_of(renameat2, u.mnt / "a", u.mnt / "b", RENAME_NOREPLACE) == errno.EEXIST
    renameat2(u.mnt / "a", u.mnt / "gone", RENAME_NOREPLACE)
    assert (u.mnt / "gone").read_bytes() == b"a"
    assert sorted(os.listdir(u.mnt)) == ["b", "gone"]


def test_rename_exchange(union, known_difference):
    u = union({"a": File(b"a"), "dir/x": File(b"x")}, {"b": File(b"b")},
              upper={"c": File(b"c")}, redirect_dir=True)
    renameat2(u.mnt / "a", u.mnt / "b", RENAME_EXCHANGE)
    renameat2(u.mnt / "c", u.mnt / "a", RENAME_EXCHANGE)
    assert [(u.mnt / n).read_bytes() for n in ("a", "b", "c")] == [b"c", b"a", b"b"]
    assert _errno_of(renameat2, u.mnt / "a", u.mnt / "missing", RENAME_EXCHANGE) == errno.ENOENT
    known_difference("EXDEV when exchanging a directory from a lower layer")
    renameat2(u.mnt / "a", u.mnt / "dir", RENAME_EXCHANGE)
    assert (u.mnt / "dir").read_bytes() == b"c"
    assert (u.mnt / "a/x").read_bytes() == b"x"


# ---------------------------------------------------------------- names and paths

def test_names_longer_than_255_bytes_are_refused(union, known_difference):
    u = union({"d": Dir()})
    known_difference("names are limited to 251 bytes; ENOENT instead of ENAMETOOLONG")
    ok, too_long = "n" * 255, "n" * 256
    (u.mnt / "d" / ok).write_bytes(b"fits")
    assert (u.mnt / "d" / ok).read_bytes() == b"fits"
    assert _errno_of(os.stat, u.mnt / "d" / too_long) == errno.ENAMETOOLONG
    assert _errno_of(os.open, u.mnt / "d" / too_long, os.O_CREAT | os.O_WRONLY) \
        == errno.ENAMETOOLONG
    assert _errno_of(os.mkdir, u.mnt / too_long) == errno.ENAMETOOLONG
    assert _errno_of(os.symlink, "x", u.mnt / too_long) == errno.ENAMETOOLONG


def test_a_path_of_4000_bytes_inside_the_mount_works(union):
    u = union({"top": Dir()})
    component = "c" * 199
    depth = 20                                       # 20 * 200 bytes
    fds = [os.open(u.mnt / "top", os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for _ in range(depth):
            os.mkdir(component, dir_fd=fds[-1])
            fds.append(os.open(component, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        fd = os.open("file", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[-1])
        os.write(fd, b"deep")
        os.close(fd)
        os.rename("file", "renamed", src_dir_fd=fds[-1], dst_dir_fd=fds[-1])
        fd = os.open("renamed", os.O_RDONLY, dir_fd=fds[-1])
        assert os.read(fd, 10) == b"deep"
        os.close(fd)
        relative = "/".join([component] * depth + ["renamed"])
        assert len(relative) >= 4000
        assert os.stat(relative, dir_fd=fds[0]).st_size == 4
    finally:
        for fd in fds:
            os.close(fd)
    upper_fd = os.open(u.upper / "top", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.stat(relative, dir_fd=upper_fd).st_size == 4
    finally:
        os.close(upper_fd)


_DEEP = ["c" * 199] * 24  # 4800 bytes below "top": past PATH_MAX in every layer


def _walk_down(root, names, *, create: bool = False) -> list[int]:
    """Directory fds from ROOT down through NAMES (made first if CREATE), one name per
    call: the only way to reach a directory deeper than PATH_MAX."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    for name in names:
        if create:
            os.mkdir(name, dir_fd=fds[-1])
        fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    return fds


def _make_deep_lower(lowers) -> None:
    fds = _walk_down(lowers[0] / "top", _DEEP, create=True)
    try:
        for name in ("lowfile", "gone"):
            fd = os.open(name, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fds[-1])
            os.write(fd, b"low")
            os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def test_paths_longer_than_path_max_inside_the_mount_work(union):
    """pjdfstest's */03.t: the kernel resolves a name at a time, so entries may sit
    deeper than PATH_MAX below a layer root; every operation must still work there."""
    u = union({"top": Dir()}, prepare=_make_deep_lower)
    fds = _walk_down(u.mnt / "top", _DEEP)
    d = fds[-1]
    try:
        fd = os.open("lowfile", os.O_RDWR | os.O_APPEND, dir_fd=d)   # copy-up at depth
        os.write(fd, b"+up")
        os.close(fd)
        os.unlink("gone", dir_fd=d)                                  # whiteout at depth
        os.mkdir("sub", 0o755, dir_fd=d)
        fd = os.open("f", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=d)
        os.write(fd, b"deep data")
        os.close(fd)
        os.chmod("f", 0o600, dir_fd=d)
        os.chown("f", 1, 2, dir_fd=d)
        os.truncate(f"/proc/self/fd/{d}/f", 4)
        os.utime("f", ns=(10**9, 2 * 10**9), dir_fd=d)
        os.setxattr(f"/proc/self/fd/{d}/f", "user.k", b"v")
        os.symlink("f", "sl", dir_fd=d)
        os.link("f", "hl", src_dir_fd=d, dst_dir_fd=d)
        os.rename("f", "g", src_dir_fd=d, dst_dir_fd=d)
        os.mknod("fifo", 0o600 | stat.S_IFIFO, dir_fd=d)
        st = os.stat("g", dir_fd=d)
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_nlink,
                st.st_mtime_ns) == (0o600, 1, 2, 4, 2, 2 * 10**9)
        assert os.getxattr(f"/proc/self/fd/{d}/g", "user.k") == b"v"
        assert os.readlink("sl", dir_fd=d) == "f"
        assert sorted(os.listdir(d)) == ["fifo", "g", "hl", "lowfile", "sl", "sub"]
        fd = os.open("lowfile", os.O_RDONLY, dir_fd=d)
        assert os.read(fd, 20) == b"low+up"
        os.close(fd)
        for name in ("sl", "hl", "fifo"):
            os.unlink(name, dir_fd=d)
        os.rmdir("sub", dir_fd=d)
        assert sorted(os.listdir(d)) == ["g", "lowfile"]
    finally:
        for fd in fds:
            os.close(fd)
    up = _walk_down(u.upper / "top", _DEEP)
    try:
        assert sorted(os.listdir(up[-1])) == ["g", "gone", "lowfile"]
        assert stat.S_ISCHR(os.stat("gone", dir_fd=up[-1], follow_symlinks=False).st_mode)
        assert os.stat("g", dir_fd=up[-1]).st_size == 4
    finally:
        for fd in up:
            os.close(fd)

# ---------------------------------------------------------------- xattrs, statfs

def test_copied_up_hard_links_show_no_bookkeeping_xattrs(union):
    # Regression: the index's link count (user.layerbox.remaining, on the inode the
    # upper names share) was listed through the mount and exported in layers.
    u = union({"h1": File(b"x"), "h2": HardLink("h1")})
    with open(u.mnt / "h1", "ab") as f:
        f.write(b"+")
    os.link(u.mnt / "h2", u.mnt / "h3")
    for name in ("h1", "h2", "h3"):
        assert [n for n in os.listxattr(u.mnt / name) if n.startswith("user.")] == []


def test_xattrs_on_merged_entries(union):
    u = union({"f": File(xattrs={"user.a": b"1"}), "d": Dir(opaque="trusted"),
               "d/x": File()})
    assert visible_xattrs(u.mnt / "f") == (("user.a", b"1"),)
    assert visible_xattrs(u.mnt / "d") == ()         # the opaque marker stays private
    assert "trusted.overlay.opaque" not in os.listxattr(u.mnt / "d")
    os.setxattr(u.mnt / "f", "user.b", b"2")
    os.removexattr(u.mnt / "f", "user.a")
    assert visible_xattrs(u.mnt / "f") == (("user.b", b"2"),)
    assert visible_xattrs(u.upper / "f") == (("user.b", b"2"),)
    assert _errno_of(os.getxattr, u.mnt / "f", "user.a") == errno.ENODATA
    assert _errno_of(os.removexattr, u.mnt / "f", "user.a") == errno.ENODATA
    assert _errno_of(os.setxattr, u.mnt / "f", "user.b", b"3", os.XATTR_CREATE) == errno.EEXIST
    assert _errno_of(os.setxattr, u.mnt / "f", "user.c", b"3", os.XATTR_REPLACE) \
        == errno.ENODATA
    os.setxattr(u.mnt / "d", "user.dir", b"v")
    assert visible_xattrs(u.mnt / "d") == (("user.dir", b"v"),)


def test_xattrs_appear_on_upper_files_already_asked_for(union):
    # The daemon remembers that an upper file has no xattrs (the kernel asks for
    # security.capability before every write): what we set must still be seen.
    u = union({"lower": File(b"l")}, upper={"up": File(b"u"), "tagged": File(
        xattrs={"user.t": b"1"})})
    new = u.mnt / "new"
    new.write_bytes(b"x")
    for path in (new, u.mnt / "up"):
        assert _errno_of(os.getxattr, path, "security.capability") == errno.ENODATA
        assert visible_xattrs(path) == ()
        with open(path, "ab") as f:
            f.write(b"more")
        os.setxattr(path, "user.a", b"1")
        assert visible_xattrs(path) == (("user.a", b"1"),)
        os.removexattr(path, "user.a")
        assert visible_xattrs(path) == ()
        assert _errno_of(os.getxattr, path, "user.a") == errno.ENODATA
        os.setxattr(path, "user.b", b"2")
        assert os.getxattr(path, "user.b") == b"2"
    assert visible_xattrs(u.mnt / "tagged") == (("user.t", b"1"),)
    os.removexattr(u.mnt / "tagged", "user.t")
    assert visible_xattrs(u.mnt / "tagged") == ()
    os.setxattr(u.mnt / "tagged", "user.u", b"2")
    assert visible_xattrs(u.mnt / "tagged") == (("user.u", b"2"),)
    # a lower file asked for before its copy-up
    assert _errno_of(os.getxattr, u.mnt / "lower", "user.l") == errno.ENODATA
    os.setxattr(u.mnt / "lower", "user.l", b"3")
    assert visible_xattrs(u.mnt / "lower") == (("user.l", b"3"),)


def test_statfs_reports_the_upper_file_system(union, known_difference):
    known_difference("f_namemax is 251")
    u = union({"f": File()})
    merged, upper = os.statvfs(u.mnt), os.statvfs(u.upper)
    assert (merged.f_bsize, merged.f_blocks) == (upper.f_bsize, upper.f_blocks)
    assert merged.f_namemax == 255


# ---------------------------------------------------------------- read-only

def test_a_mount_without_upper_is_read_only(union, known_difference):
    known_difference("rmdir of a non-empty dir says ENOTEMPTY before EROFS")
    # (the kernel overlay wants two lowers when there is no upper)
    u = union({"f": File(b"x"), "d/g": File()}, {"bottom": File()}, writable=False)
    assert (u.mnt / "f").read_bytes() == b"x"
    for call, args in ((os.open, (u.mnt / "new", os.O_CREAT | os.O_WRONLY)),
                       (os.open, (u.mnt / "f", os.O_WRONLY)),
                       (os.mkdir, (u.mnt / "newdir",)), (os.unlink, (u.mnt / "f",)),
                       (os.rmdir, (u.mnt / "d",)), (os.chmod, (u.mnt / "f", 0o600)),
                       (os.rename, (u.mnt / "f", u.mnt / "g")),
                       (os.setxattr, (u.mnt / "f", "user.x", b"1")),
                       (os.symlink, ("f", u.mnt / "s"))):
        assert _errno_of(call, *args) == errno.EROFS, (call.__name__, args)


# ---------------------------------------------------------------- permissions

def _as_nobody(script: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "sh", "-c", script], cwd=cwd, capture_output=True, text=True)


def test_permission_checks_apply_to_other_users(union, known_difference):
    known_difference("every new directory gets .wh..wh..opq/.wh..opq bookkeeping")
    u = union({"secret": File(b"s", mode=0o600), "public": File(b"p", mode=0o644),
               "closed": Dir(mode=0o755), "shared": Dir(mode=0o777),
               "sticky": Dir(mode=0o1777), "sticky/roots": File(mode=0o666)})
    assert _as_nobody("cat secret", u.mnt).returncode != 0
    assert _as_nobody("cat public", u.mnt).stdout == "p"
    assert _as_nobody("echo x >> public", u.mnt).returncode != 0
    assert _as_nobody("touch closed/new", u.mnt).returncode != 0
    assert _as_nobody("rm -f sticky/roots", u.mnt).returncode != 0
    done = _as_nobody("touch shared/mine && mkdir shared/dir && echo ok", u.mnt)
    assert done.stdout == "ok\n", done.stderr
    for rel in ("shared/mine", "shared/dir"):
        st = os.stat(u.mnt / rel)
        assert (st.st_uid, st.st_gid) == (65534, 65534), rel
        st = os.stat(u.upper / rel)
        assert (st.st_uid, st.st_gid) == (65534, 65534), rel
    assert sorted(upper_kinds(u.upper)) == ["shared", "shared/dir", "shared/mine"]


def test_chown_as_root_and_setgid_directories(union, known_difference):
    known_difference("setgid directories do not pass their group on")
    u = union({"sg": Dir(mode=0o2777, gid=4321), "f": File()})
    os.chown(u.mnt / "f", 11, 12)
    assert (os.stat(u.mnt / "f").st_uid, os.stat(u.mnt / "f").st_gid) == (11, 12)
    done = _as_nobody("touch sg/file && mkdir sg/sub && echo ok", u.mnt)
    assert done.stdout == "ok\n", done.stderr
    assert os.stat(u.mnt / "sg/file").st_gid == 4321
    sub = os.stat(u.mnt / "sg/sub")
    assert sub.st_gid == 4321 and sub.st_mode & 0o2000


def test_read_only_open_with_o_trunc_truncates_deeper_than_path_max(union):
    # The truncate must use the walked-down directory while it is still open.
    u = union({"top": Dir()}, prepare=_make_deep_lower)
    fds = _walk_down(u.mnt / "top", _DEEP)
    try:
        fd = os.open("lowfile", os.O_RDONLY | os.O_TRUNC, dir_fd=fds[-1])
        try:
            assert os.fstat(fd).st_size == 0
        finally:
            os.close(fd)
        assert os.stat("lowfile", dir_fd=fds[-1]).st_size == 0
    finally:
        for fd in fds:
            os.close(fd)
