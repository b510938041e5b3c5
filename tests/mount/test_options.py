"""The mount program's command-line parser, by tables (no mounting here)."""

from __future__ import annotations

import os

import pytest

from overlayfs.options import (
    InfoRequested,
    OptionError,
    parse_command_line,
    parse_id_mappings,
    split_lowerdir,
    split_options,
)


@pytest.fixture
def dirs(tmp_path):
    """lower dirs l1 (top) and l2, upper u, work w, mountpoint m, a file, a symlink to l2."""
    names = {}
    for name in ("l1", "l2", "u", "w", "m", "a:b"):
        (tmp_path / name).mkdir()
        names[name] = str(tmp_path / name)
    (tmp_path / "file").write_text("x")
    names["file"] = str(tmp_path / "file")
    os.symlink(tmp_path / "l2", tmp_path / "link")
    names["link"] = str(tmp_path / "link")
    names["missing"] = str(tmp_path / "missing")
    return names


def parse(dirs, *args, selinux=False):
    """Parse ARGS after formatting {l1}-style placeholders with the fixture's dirs."""
    return parse_command_line([arg.format(**dirs) for arg in args], selinux=selinux)


# ----------------------------------------------------------------- splitting
@pytest.mark.parametrize("text, pieces", [
    ("a,b,c", ["a", "b", "c"]),
    ("a,,b,", ["a", "b"]),
    ('context="system_u:object_r:container_file_t:s0:c1,c2",ro',
     ['context="system_u:object_r:container_file_t:s0:c1,c2"', "ro"]),
    (r"upperdir=/x\,y,ro", [r"upperdir=/x\,y", "ro"]),
    (r"lowerdir=/a\:b:/c", [r"lowerdir=/a\:b:/c"]),
    ('a="x\\"y,z",b', ['a="x\\"y,z"', "b"]),
    ("", []),
])
def test_split_options(text, pieces):
    assert split_options(text) == pieces


@pytest.mark.parametrize("value, parts", [
    ("/a:/b:/c", ["/a", "/b", "/c"]),
    (r"/a\:b:/c", ["/a:b", "/c"]),
    ('"/a:b":/c', ["/a:b", "/c"]),
    ("/a::/b:", ["/a", "/b"]),
    (r"/a\\:/b", ["/a\\", "/b"]),
])
def test_split_lowerdir(value, parts):
    assert split_lowerdir(value) == parts


@pytest.mark.parametrize("value, mappings", [
    ("0:1000:1", ((0, 1000, 1),)),
    ("0:1000:1:1:110000:65536", ((0, 1000, 1), (1, 110000, 65536))),
])
def test_id_mappings(value, mappings):
    assert parse_id_mappings("uidmapping", value) == mappings


@pytest.mark.parametrize("value", ["", "0:1000", "0:x:1", "0:1:2:3", "0:1:0", "-1:0:1"])
def test_bad_id_mappings(value):
    with pytest.raises(OptionError, match="invalid mapping"):
        parse_id_mappings("uidmapping", value)


# --------------------------------------------------------------- command line
def test_minimal(dirs):
    config = parse(dirs, "-o", "lowerdir={l1}", "{m}")
    assert config.lowers == (dirs["l1"],)
    assert config.mountpoint == dirs["m"]
    assert (config.upper, config.work, config.read_only) == (None, None, False)
    assert config.source == "layerbox-overlayfs"
    assert not config.foreground and not config.debug
    assert config.warnings == ()


def test_full_podman_style(dirs):
    config = parse(dirs, "-o", "lowerdir={l1}:{l2},upperdir={u},workdir={w},volatile", "{m}")
    assert config.lowers == (dirs["l1"], dirs["l2"])
    assert (config.upper, config.work) == (dirs["u"], dirs["w"])
    assert config.fsync is False


def test_mount_fuse3_style_options_after_positionals(dirs):
    """mount.fuse3 runs PROG SOURCE MNT -o rw,OPTS,dev,suid."""
    config = parse(dirs, "src", "{m}", "-o", "rw,nosuid,lowerdir={l1},upperdir={u},"
                   "workdir={w},dev,suid")
    assert config.source == "src"
    assert config.upper == dirs["u"]
    assert config.kernel_options == ()  # the later "suid" wins over "nosuid"


def test_repeated_and_attached_o(dirs):
    config = parse(dirs, "-olowerdir={l2}", "{m}", "-o", "upperdir={u}", "-oworkdir={w}",
                   "-o", "lowerdir={l1}")
    assert config.lowers == (dirs["l1"],)  # last lowerdir wins, as with libfuse
    assert config.work == dirs["w"]


def test_symlinked_lower_is_resolved(dirs):
    config = parse(dirs, "-o", "lowerdir={link}:{l1}", "{m}")
    assert config.lowers == (dirs["l2"], dirs["l1"])


def test_relative_paths_become_absolute(dirs, monkeypatch):
    monkeypatch.chdir(os.path.dirname(dirs["l1"]))
    config = parse_command_line(["-o", "lowerdir=l1,upperdir=u,workdir=w", "m"])
    assert config.lowers == (dirs["l1"],)
    assert (config.upper, config.work, config.mountpoint) == (dirs["u"], dirs["w"], dirs["m"])


def test_escaped_colon_in_lowerdir(dirs):
    lower = dirs["a:b"].replace(":", "\\:")
    config = parse_command_line(["-o", f"lowerdir={lower}:{dirs['l1']}", dirs["m"]],
                                selinux=False)
    assert config.lowers == (dirs["a:b"], dirs["l1"])


def test_quoted_values(dirs):
    config = parse_command_line(["-o", f'lowerdir="{dirs["a:b"]}",upperdir="{dirs["u"]}",'
                                 f'workdir={dirs["w"]}', dirs["m"]], selinux=False)
    assert config.lowers == (dirs["a:b"],)
    assert config.upper == dirs["u"]


@pytest.mark.parametrize("option, field, value", [
    ("ro", "read_only", True),
    ("ro,rw", "read_only", False),
    ("volatile", "fsync", False),
    ("fsync=0", "fsync", False),
    ("fsync=1", "fsync", True),
    ("timeout=2.5", "timeout", 2.5),
    ("timeout=0", "timeout", 0.0),
    ("squash_to_root", "squash_to_uid", 0),
    ("squash_to_root", "squash_to_gid", 0),
    ("squash_to_root,squash_to_uid=7", "squash_to_uid", 7),
    ("squash_to_uid=1000", "squash_to_uid", 1000),
    ("squash_to_gid=100", "squash_to_gid", 100),
    ("uidmapping=0:1000:1:1:100000:65536", "uid_mappings", ((0, 1000, 1), (1, 100000, 65536))),
    ("gidmapping=0:1000:1", "gid_mappings", ((0, 1000, 1),)),
    ("noxattrs", "xattrs", False),
    ("noxattrs=1", "xattrs", False),
    ("noxattrs=0", "xattrs", True),
    ("noacl", "acl", False),
    ("static_nlink", "static_nlink", True),
    ("debug", "debug", True),
    ("debug", "foreground", True),
    ("nodev", "kernel_options", ("nodev",)),
    ("nosuid,noexec", "kernel_options", ("noexec", "nosuid")),
    ("noexec,exec", "kernel_options", ()),
    ("dev,nodev", "kernel_options", ("nodev",)),
])
def test_each_option(dirs, option, field, value):
    config = parse(dirs, "-o", "lowerdir={l1}," + option, "{m}")
    assert getattr(config, field) == value
    assert config.warnings == ()


@pytest.mark.parametrize("option", [
    "rw", "dev", "suid", "exec", "atime", "noatime", "relatime", "strictatime", "diratime",
    "nodiratime", "sync", "async", "dirsync", "allow_other", "allow_root",
    "default_permissions", "auto", "noauto", "user", "nouser", "_netdev", "nofail",
    "x-systemd.automount", "x-foo=bar", "defaults", "threaded=1", "writeback=0",
    "fast_ino=1", "redirect_dir=off", "lazytime",
])
def test_generic_options_are_accepted_silently(dirs, option):
    config = parse(dirs, "-o", "lowerdir={l1}," + option, "{m}")
    assert config.warnings == ()


def test_allow_other_is_the_default_for_root(dirs):
    config = parse(dirs, "-o", "lowerdir={l1}", "{m}")
    assert config.allow_other is (os.geteuid() == 0)
    assert parse(dirs, "-o", "lowerdir={l1},allow_other", "{m}").allow_other


@pytest.mark.parametrize("selinux, expected", [
    (True, ('context="system_u:object_r:container_file_t:s0:c1,c2"',)),
    (False, ()),
])
def test_selinux_context_goes_to_the_kernel_only_with_selinux(dirs, selinux, expected):
    config = parse(dirs, "-o", 'lowerdir={l1},context="system_u:object_r:container_file_t:'
                   's0:c1,c2"', "{m}", selinux=selinux)
    assert config.kernel_options == expected
    assert config.warnings == ()


@pytest.mark.parametrize("args, warning", [
    (["-o", "lowerdir={l1},bogus", "{m}"], "unknown option 'bogus' ignored"),
    (["-o", "lowerdir={l1},index=on", "{m}"], "unknown option 'index=on' ignored"),
    (["-x", "-o", "lowerdir={l1}", "{m}"], "unknown argument '-x' ignored"),
])
def test_unknown_options_warn(dirs, args, warning):
    config = parse(dirs, *args)
    assert config.warnings == (f"layerbox-overlayfs: warning: {warning}",)
    assert config.lowers == (dirs["l1"],)


@pytest.mark.parametrize("flags, foreground, debug", [
    ([], False, False),
    (["-f"], True, False),
    (["-d"], True, True),
    (["--debug"], True, True),
    (["-f", "-d", "-s"], True, True),
])
def test_flags(dirs, flags, foreground, debug):
    config = parse(dirs, *flags, "-o", "lowerdir={l1}", "{m}")
    assert (config.foreground, config.debug) == (foreground, debug)


@pytest.mark.parametrize("flag, text", [
    ("-h", "usage: layerbox-overlayfs"),
    ("--help", "usage: layerbox-overlayfs"),
    ("-V", "layerbox-overlayfs: version"),
    ("--version", "layerbox-overlayfs: version"),
])
def test_help_and_version_need_nothing_else(flag, text):
    with pytest.raises(InfoRequested) as info:
        parse_command_line([flag])
    assert text in info.value.text


@pytest.mark.parametrize("args, message", [
    (["-o", "lowerdir={l1}"], "no mountpoint specified"),
    (["{m}"], "no lowerdir specified"),
    (["-o", "lowerdir=", "{m}"], "lowerdir is empty"),
    (["-o", "lowerdir=::", "{m}"], "lowerdir is empty"),
    (["-o", "lowerdir={missing}", "{m}"], "lowerdir '{missing}' does not exist"),
    (["-o", "lowerdir={l1}:{file}", "{m}"], "lowerdir '{file}' is not a directory"),
    (["-o", "lowerdir={l1}", "{missing}"], "mountpoint '{missing}' does not exist"),
    (["-o", "lowerdir={l1}", "{file}"], "mountpoint '{file}' is not a directory"),
    (["-o", "lowerdir={l1},upperdir={u}", "{m}"], "workdir not specified"),
    (["-o", "lowerdir={l1},upperdir={missing},workdir={w}", "{m}"],
     "upperdir '{missing}' does not exist"),
    (["-o", "lowerdir={l1},upperdir={u},workdir={missing}", "{m}"],
     "workdir '{missing}' does not exist"),
    (["-o", "lowerdir={l1},upperdir={u},workdir={u}", "{m}"], "must be separate"),
    (["-o", "lowerdir={l1},timeout=soon", "{m}"], "invalid value for timeout=: 'soon'"),
    (["-o", "lowerdir={l1},timeout=-1", "{m}"], "invalid value for timeout="),
    (["-o", "lowerdir={l1},squash_to_uid=x", "{m}"], "invalid value for squash_to_uid="),
    (["-o", "lowerdir={l1},squash_to_gid=-5", "{m}"], "invalid value for squash_to_gid="),
    (["-o", "lowerdir={l1},fsync=yes", "{m}"], "invalid value for fsync="),
    (["-o", "lowerdir={l1},uidmapping=0:1", "{m}"], "invalid mapping specified"),
    (["-o", "lowerdir={l1}", "a", "b", "{m}"], "too many arguments"),
    (["{m}", "-o"], "option -o requires an argument"),
])
def test_errors_are_one_line(dirs, args, message):
    with pytest.raises(OptionError) as error:
        parse(dirs, *args)
    assert message.format(**dirs) in str(error.value)
    assert "\n" not in str(error.value)


def test_workdir_on_another_filesystem(dirs):
    if os.stat("/dev/shm").st_dev == os.stat(dirs["u"]).st_dev:
        pytest.skip("/dev/shm is on the same filesystem as the temp dir")
    import tempfile

    with tempfile.TemporaryDirectory(dir="/dev/shm") as work:
        with pytest.raises(OptionError, match="same filesystem"):
            parse_command_line(["-o", f"lowerdir={dirs['l1']},upperdir={dirs['u']},"
                                f"workdir={work}", dirs["m"]], selinux=False)


def test_workdir_without_upperdir_is_unused(dirs):
    config = parse(dirs, "-o", "lowerdir={l1},workdir={missing}", "{m}")
    assert (config.upper, config.work) == (None, None)
