"""The installed ``layerbox-overlayfs`` end to end: its own command line and mount(8)'s
``-t fuse.layerbox-overlayfs`` route, with the real union filesystem behind them."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from tests.support.fusemount import (
    LOG_ENV,
    mount_entry,
    mount_info,
    mounted,
    mount_program,
    overlay_argv,
    pid_alive,
    wait_for,
)

SYSTEM_LINK = "/usr/local/bin/layerbox-overlayfs"


@pytest.fixture
def layers(tmp_path):
    for name in ("low1", "low2", "upper", "work", "mnt"):
        (tmp_path / name).mkdir()
    (tmp_path / "low1" / "top.txt").write_text("from the top layer\n")
    (tmp_path / "low2" / "bottom.txt").write_text("from the bottom layer\n")
    (tmp_path / "low2" / "top.txt").write_text("hidden\n")
    return tmp_path


def test_lower_files_visible_and_writes_go_to_upper(layers):
    argv = overlay_argv(layers / "mnt", [layers / "low1", layers / "low2"],
                        upper=layers / "upper", work=layers / "work")
    with mounted(argv, layers / "mnt") as m:
        assert m.process.returncode == 0
        assert (layers / "mnt" / "top.txt").read_text() == "from the top layer\n"
        assert (layers / "mnt" / "bottom.txt").read_text() == "from the bottom layer\n"
        (layers / "mnt" / "new.txt").write_text("new\n")
        assert (layers / "upper" / "new.txt").read_text() == "new\n"
        info = mount_info(layers / "mnt")
        assert info["fstype"] == "fuse.layerbox-overlayfs"
        assert {"default_permissions", "allow_other"} <= info["super_options"]
        m.unmount()
    assert "(from outside); exiting" in m.log()


def test_command_returns_only_once_the_mount_serves(layers):
    mnt = layers / "mnt"
    argv = overlay_argv(mnt, [layers / "low1"])
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mnt)
        assert (mnt / "top.txt").read_text() == "from the top layer\n"
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def test_source_with_comma_and_non_ascii_survives_libfuse(layers):
    argv = overlay_argv(layers / "mnt", [layers / "low1"])
    argv.insert(-1, "my,söurce")
    with mounted(argv, layers / "mnt"):
        assert mount_info(layers / "mnt")["source"] == "my,söurce"


def test_without_upperdir_the_mount_is_read_only(layers):
    with mounted(overlay_argv(layers / "mnt", [layers / "low1"]), layers / "mnt"):
        with pytest.raises(OSError) as error:
            (layers / "mnt" / "x").write_text("x")
        assert error.value.errno == errno.EROFS


@pytest.mark.parametrize("flags", [(), ("-f",)], ids=["detached", "foreground"])
def test_the_mount_reads_ahead_a_full_request(layers, flags):
    """Big sequential reads arrive in 1 MiB READs, not the kernel's default 256 KiB:
    the readahead is raised at the first open (after the INIT reply, which would cap
    it), in either mode; a space in the mountpoint is escaped in mountinfo."""
    mnt = layers / "mount point"
    mnt.mkdir()
    with mounted(overlay_argv(mnt, [layers / "low1"], flags=flags), mnt):
        dev = os.stat(mnt).st_dev
        knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
        with open(knob) as f:
            assert int(f.read()) < 1024  # the kernel's default until a file is opened
        assert (mnt / "top.txt").read_text() == "from the top layer\n"
        with open(knob) as f:
            assert int(f.read()) == 1024


def test_stale_workdir_staging_is_removed(layers):
    (layers / "work" / "leftover-copyup").write_text("half a file")
    (layers / "work" / "leftover-dir").mkdir()
    (layers / "work" / "leftover-dir" / "f").write_text("x")
    os.symlink(layers / "low1", layers / "work" / "leftover-link")
    argv = overlay_argv(layers / "mnt", [layers / "low1"], upper=layers / "upper",
                        work=layers / "work")
    with mounted(argv, layers / "mnt"):
        left = {p.name for p in (layers / "work").iterdir()}
        assert not left & {"leftover-copyup", "leftover-dir", "leftover-link"}
        assert (layers / "low1" / "top.txt").exists()  # the symlink was not followed


@pytest.mark.skipif(not os.path.exists(SYSTEM_LINK), reason="scripts/setup not run")
def test_mount_t_fuse_layerbox_overlayfs(layers, tmp_path):
    """mount(8) → /sbin/mount.fuse3 → /bin/sh → layerbox-overlayfs SRC MNT -o rw,...:
    found without PATH (sh's default path has /usr/local/bin), no venv activation."""
    log = tmp_path / "daemon.log"
    argv = ["/usr/bin/env", "-i", f"{LOG_ENV}={log}", "/usr/bin/mount", "-t",
            "fuse.layerbox-overlayfs", "mysource", str(layers / "mnt"), "-o",
            f"lowerdir={layers / 'low1'}:{layers / 'low2'},upperdir={layers / 'upper'},"
            f"workdir={layers / 'work'},nosuid"]
    with mounted(argv, layers / "mnt", env={LOG_ENV: str(log)}, foreground=False) as m:
        info = mount_info(layers / "mnt")
        assert (info["fstype"], info["source"]) == ("fuse.layerbox-overlayfs", "mysource")
        assert "nosuid" in info["options"]
        assert (layers / "mnt" / "bottom.txt").read_text() == "from the bottom layer\n"
        pid = m.server_pid()
        subprocess.run(["umount", str(layers / "mnt")], check=True)
        assert mount_entry(layers / "mnt") is None
        wait_for(lambda: not pid_alive(pid), "the daemon to exit after umount")


@pytest.mark.parametrize("make_args, message", [
    (lambda d: ["-o", f"lowerdir={d / 'nope'}", str(d / "mnt")],
     "lowerdir '{d}/nope' does not exist"),
    (lambda d: ["-o", f"lowerdir={d / 'low1'},upperdir={d / 'upper'}", str(d / "mnt")],
     "workdir not specified (required with upperdir)"),
    (lambda d: ["-o", f"lowerdir={d / 'low1'}", str(d / "nope")],
     "mountpoint '{d}/nope' does not exist"),
])
def test_bad_command_line_is_one_line_and_mounts_nothing(layers, make_args, message):
    result = subprocess.run([mount_program(), *make_args(layers)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr == f"layerbox-overlayfs: {message.format(d=layers)}\n"
    assert mount_entry(layers / "mnt") is None


@pytest.mark.parametrize("flag, text", [("--help", "usage:"), ("-V", "version")])
def test_help_and_version(flag, text):
    result = subprocess.run([mount_program(), flag], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and text in result.stdout


def test_fuse_overlayfs_stand_in_accepts_the_same_command_line(layers):
    """Our helper's command line is exactly fuse-overlayfs' (the stand-in)."""
    if shutil.which("fuse-overlayfs") is None:
        pytest.skip("fuse-overlayfs not installed")
    argv = overlay_argv(layers / "mnt", [layers / "low1", layers / "low2"],
                        upper=layers / "upper", work=layers / "work")
    argv[0] = shutil.which("fuse-overlayfs")
    with mounted(argv, layers / "mnt"):
        assert (layers / "mnt" / "top.txt").read_text() == "from the top layer\n"


def test_layers_are_released_before_the_rest_of_the_shutdown(layers):
    # umount of a FUSE mount does not wait for the daemon, and scripts unmount the
    # upper filesystem right after the union (unionmount-testsuite does, and failed
    # with EBUSY): the layer descriptors are closed as soon as the loop ends.
    argv = overlay_argv(layers / "mnt", [layers / "low1"], upper=layers / "upper",
                        work=layers / "work", flags=["-d"])
    with mounted(argv, layers / "mnt") as m:
        (layers / "mnt" / "new.txt").write_text("new\n")
        m.unmount()
    err = m.final["stderr"]
    assert "layers released" in err, err[-2000:]
    assert err.index("layers released") < err.index("(from outside); exiting")


def _args_on_stdin(mnt, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([mount_program(), "--args-on-stdin", str(mnt)], input=stdin,
                          capture_output=True, timeout=60)


def test_args_on_stdin_completes_the_command_line_and_ps_shows_the_mountpoint(layers):
    """What `layerbox run` does: start the program first, tell it the layers later."""
    mnt = layers / "mnt"
    options = f"lowerdir={layers / 'low1'}:{layers / 'low2'}"
    try:
        result = _args_on_stdin(mnt, b"\0".join([b"-o", os.fsencode(options)]))
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == (b"", b"")
        assert (mnt / "bottom.txt").read_text() == "from the bottom layer\n"
        servers = [pid for pid in os.listdir("/proc") if pid.isdigit()
                   and _cmdline(pid)[-2:] == [b"--args-on-stdin", os.fsencode(mnt)]]
        assert len(servers) == 1
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)


def _cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[:-1]
    except OSError:
        return []


def test_args_on_stdin_with_nothing_on_stdin_mounts_nothing(layers):
    result = _args_on_stdin(layers / "mnt", b"")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert mount_entry(layers / "mnt") is None


def test_args_on_stdin_bad_options_are_one_line_exit_1(layers):
    result = _args_on_stdin(layers / "mnt", b"-o\0lowerdir=" + os.fsencode(layers / "nope"))
    assert result.returncode == 1
    assert result.stderr == (f"layerbox-overlayfs: lowerdir '{layers / 'nope'}' does not "
                             "exist\n").encode()
    assert mount_entry(layers / "mnt") is None
