"""diff: the A/C/D list of an upper dir against its lowers, as `docker diff` prints it."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import pytest

from overlayfs.changes import Change, ChangeKind, changes, group_changes

ROOT = os.geteuid() == 0

SPEC_LOWER = ["etc/motd", "opt/a/b/f", "opt/keep/k", "srv/d/z"]
SPEC_COMMANDS = ("rm -r /opt/a; echo x >> /etc/motd; chmod 600 /opt/keep/k; rm -r /srv/d; "
                 "mkdir /srv/d; echo n > /srv/d/new; mkdir -p /new/dir/deep; "
                 "echo q > /new/dir/deep/q; ln -s /x /lnk; mv /opt/keep/k /opt/keep/k2")
SPEC_EXPECTED = """\
C /etc
C /etc/motd
A /lnk
A /new
A /new/dir
A /new/dir/deep
A /new/dir/deep/q
C /opt
D /opt/a
C /opt/keep
D /opt/keep/k
A /opt/keep/k2
C /srv
D /srv/d
A /srv/d/new""".splitlines()


def _lines(lowers, upper) -> list[str]:
    return [str(c) for c in changes([str(x) for x in lowers], str(upper))]


def _files(root, paths, content=b"lower\n"):
    for path in paths:
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)


def _copy_dir_meta(src, dst):
    """What an overlay copy-up of a directory leaves: same mode, owner and times."""
    os.makedirs(dst, exist_ok=True)
    st = os.stat(src)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.chown(dst, st.st_uid, st.st_gid)


class Layers:
    """Hand-built lower and upper dirs, with whiteouts in either form."""

    def __init__(self, tmp_path, n_lowers=1, *, char_whiteouts=ROOT):
        self.lowers = [tmp_path / f"lower{i}" for i in range(n_lowers)]
        for lower in self.lowers:
            lower.mkdir()
        self.upper = tmp_path / "upper"
        self.upper.mkdir()
        self.char_whiteouts = char_whiteouts

    def up(self, rel):
        """Copy up the directories on the way to REL from the top lower that has them."""
        parts = rel.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            for lower in self.lowers:
                if (lower / sub).is_dir():
                    if not (self.upper / sub).exists():
                        _copy_dir_meta(lower / sub, self.upper / sub)
                    break
            else:
                (self.upper / sub).mkdir(exist_ok=True)
        return self.upper / rel.strip("/")

    def whiteout(self, rel, layer=None):
        base = self.upper if layer is None else self.lowers[layer]
        parent = os.path.dirname(rel.strip("/"))
        if layer is None and parent:
            self.up(parent)
        else:
            os.makedirs(base / parent, exist_ok=True)
        name = os.path.basename(rel)
        if self.char_whiteouts:
            os.mknod(base / parent / name, stat.S_IFCHR, os.makedev(0, 0))
        else:
            (base / parent / f".wh.{name}").touch()

    def opaque(self, rel, form="xattr"):
        path = self.up(rel)
        if form == "marker":
            (path / ".wh..wh..opq").touch()
        else:
            os.setxattr(path, "trusted.overlay.opaque" if ROOT else "user.overlay.opaque", b"y")
        return path

    def lines(self):
        return _lines(self.lowers, self.upper)


def _spec_by_hand(layers: Layers):
    _files(layers.lowers[0], SPEC_LOWER)
    u = layers.upper
    layers.whiteout("/opt/a")
    layers.up("/etc")
    shutil.copy2(layers.lowers[0] / "etc/motd", u / "etc/motd")
    with open(u / "etc/motd", "ab") as f:
        f.write(b"x\n")
    layers.whiteout("/srv/d")
    os.unlink(u / "srv/d") if layers.char_whiteouts else os.unlink(u / "srv/.wh.d")
    layers.opaque("/srv/d")
    (u / "srv/d/new").write_text("n\n")
    os.makedirs(u / "new/dir/deep")
    (u / "new/dir/deep/q").write_text("q\n")
    os.symlink("/x", u / "lnk")
    layers.up("/opt/keep")
    shutil.copy2(layers.lowers[0] / "opt/keep/k", u / "opt/keep/k2")
    os.chmod(u / "opt/keep/k2", 0o600)
    layers.whiteout("/opt/keep/k")


@pytest.mark.parametrize("char_whiteouts", [True, False] if ROOT else [False],
                         ids=["chardev-whiteouts", "wh-file-whiteouts"][: 2 if ROOT else 1])
def test_spec_example_by_hand(tmp_path, char_whiteouts):
    layers = Layers(tmp_path, char_whiteouts=char_whiteouts)
    _spec_by_hand(layers)
    assert layers.lines() == SPEC_EXPECTED


def test_spec_example_opaque_marker_form(tmp_path):
    layers = Layers(tmp_path, char_whiteouts=False)
    _files(layers.lowers[0], SPEC_LOWER)
    layers.opaque("/srv/d", form="marker")
    (layers.upper / "srv/d/new").write_text("n\n")
    assert layers.lines() == ["C /srv", "D /srv/d", "A /srv/d/new"]


@pytest.mark.skipif(not ROOT, reason="mounting the kernel overlay needs root")
def test_spec_example_on_the_kernel_overlay(tmp_path):
    """The kernel overlay is the oracle: run the spec's commands, then diff its upper."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    _files(lower, SPEC_LOWER)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off",
                    str(merged)], check=True)
    try:
        script = SPEC_COMMANDS.replace(" /", f" {merged}/")
        subprocess.run(["/bin/busybox", "sh", "-ec", script], check=True)
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=True)
    assert _lines([lower], upper) == SPEC_EXPECTED
    assert group_changes(changes([lower], upper)) == {
        "changed": ["/etc", "/etc/motd", "/opt", "/opt/keep", "/srv"],
        "added": ["/lnk", "/new", "/new/dir", "/new/dir/deep", "/new/dir/deep/q",
                  "/opt/keep/k2", "/srv/d/new"],
        "deleted": ["/opt/a", "/opt/keep/k", "/srv/d"],
    }


@pytest.mark.skipif(not ROOT or not shutil.which("fuse-overlayfs"),
                    reason="needs root and fuse-overlayfs")
def test_spec_example_on_fuse_overlayfs(tmp_path):
    """fuse-overlayfs (the stand-in mount program) marks every new dir opaque and
    leaves ".wh..opq" devices: the result must still be the spec's list."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    _files(lower, SPEC_LOWER)
    subprocess.run(["fuse-overlayfs", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
                    str(merged)], check=True, capture_output=True)
    try:
        script = SPEC_COMMANDS.replace(" /", f" {merged}/")
        subprocess.run(["/bin/busybox", "sh", "-ec", script], check=True)
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(merged)], check=True)
    assert _lines([lower], upper) == SPEC_EXPECTED


@pytest.mark.skipif(not ROOT, reason="mounting the kernel overlay needs root")
def test_kernel_redirect_dir_is_reported_as_a_full_copy(tmp_path):
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower, upper, work, merged):
        d.mkdir()
    _files(lower, ["opt/a/b/f", "opt/a/g", "opt/a/gone", "keep"])
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=on",
                    str(merged)], check=True)
    try:
        subprocess.run(["/bin/busybox", "sh", "-ec",
                        f"mv {merged}/opt/a {merged}/moved; rm {merged}/moved/gone; "
                        f"echo new > {merged}/moved/b/new"], check=True)
    finally:
        subprocess.run(["umount", "-l", str(merged)], check=True)
    assert os.getxattr(upper / "moved", "trusted.overlay.redirect")
    assert _lines([lower], upper) == [
        "A /moved", "A /moved/b", "A /moved/b/f", "A /moved/b/new", "A /moved/g",
        "C /opt", "D /opt/a"]


def test_change_values():
    change = Change("/a/b", ChangeKind.ADDED)
    assert str(change) == "A /a/b"
    assert hash(change) == hash(Change("/a/b", ChangeKind.ADDED))


def test_empty_upper_has_no_changes(tmp_path):
    layers = Layers(tmp_path)
    _files(layers.lowers[0], ["etc/motd"])
    assert layers.lines() == []


def test_every_directory_on_the_way_to_a_change_is_changed(tmp_path):
    layers = Layers(tmp_path)
    _files(layers.lowers[0], ["a/b/c/f", "a/other"])
    path = layers.up("/a/b/c")
    shutil.copy2(layers.lowers[0] / "a/b/c/f", path / "f")
    os.chmod(path / "f", 0o600)
    assert layers.lines() == ["C /a", "C /a/b", "C /a/b/c", "C /a/b/c/f"]


def test_copied_up_directory_alone_is_unchanged_but_metadata_counts(tmp_path):
    layers = Layers(tmp_path)
    _files(layers.lowers[0], ["same/f", "moded/f", "touched/f"])
    layers.up("/same")
    os.chmod(layers.up("/moded"), 0o700)
    os.utime(layers.up("/touched"), (1, 1))
    assert layers.lines() == ["C /moded", "C /touched"]


def test_lower_whiteouts_and_opaque_dirs_count(tmp_path):
    """An entry a higher lower deleted is new again; Docker would call it changed."""
    layers = Layers(tmp_path, n_lowers=2)
    top, bottom = layers.lowers
    _files(bottom, ["etc/deleted", "etc/kept", "var/old/x"])
    layers.whiteout("/etc/deleted", layer=0)
    os.makedirs(top / "var/old")
    os.setxattr(top / "var/old", "trusted.overlay.opaque" if ROOT else "user.overlay.opaque",
                b"y")
    (top / "var/old/y").write_text("y")
    u = layers.upper
    layers.up("/etc")
    (u / "etc/deleted").write_text("again")
    (u / "etc/kept").write_text("changed")
    layers.up("/var/old")
    (u / "var/old/x").write_text("x")   # hidden below the opaque dir: new
    (u / "var/old/y").write_text("y2")  # visible in the top lower: changed
    assert layers.lines() == ["C /etc", "A /etc/deleted", "C /etc/kept",
                              "C /var", "C /var/old", "A /var/old/x", "C /var/old/y"]


def test_opaque_dir_without_lower_twin_is_added(tmp_path):
    """Our union marks a dir opaque when it replaces a renamed one: new name is A."""
    layers = Layers(tmp_path)
    _files(layers.lowers[0], ["old/f"])
    layers.whiteout("/old")
    path = layers.opaque("/renamed")
    (path / "f").write_text("lower\n")
    assert layers.lines() == ["D /old", "A /renamed", "A /renamed/f"]


def test_whiteout_file_form_sorts_by_deleted_name(tmp_path):
    layers = Layers(tmp_path, char_whiteouts=False)
    _files(layers.lowers[0], ["d/b", "d/z", "d/a"])
    layers.whiteout("/d/z")
    layers.whiteout("/d/b")
    (layers.upper / "d/c").write_text("c")
    assert layers.lines() == ["C /d", "D /d/b", "A /d/c", "D /d/z"]


def test_type_change_and_hard_link(tmp_path):
    layers = Layers(tmp_path)
    _files(layers.lowers[0], ["f", "file-becomes-dir"])
    u = layers.upper
    layers.whiteout("/file-becomes-dir")
    os.unlink(u / "file-becomes-dir") if ROOT else os.unlink(u / ".wh.file-becomes-dir")
    layers.opaque("/file-becomes-dir")
    shutil.copy2(layers.lowers[0] / "f", u / "f")
    os.link(u / "f", u / "f-link")
    assert layers.lines() == ["C /f", "A /f-link", "D /file-becomes-dir"]


def test_many_changes_are_fast(tmp_path):
    layers = Layers(tmp_path)
    _files(layers.lowers[0], [f"big/lower{i}" for i in range(50)])
    u = layers.up("/big")
    for d in range(10):
        fd = os.open(u, os.O_RDONLY | os.O_DIRECTORY)
        os.mkdir(f"d{d}", dir_fd=fd)
        sub = os.open(f"d{d}", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        for i in range(1000):
            os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=sub))
        os.close(sub)
        os.close(fd)
    start = time.perf_counter()
    found = changes([layers.lowers[0]], layers.upper)
    elapsed = time.perf_counter() - start
    assert len(found) == 10 * 1001 + 1
    # 20,000 changes take ~0.06 s on the dev VM; the bound is generous for busy CI.
    assert elapsed < 0.5, elapsed
