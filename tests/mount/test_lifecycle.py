"""Lifecycle of the mount program with real FUSE mounts of a tiny test filesystem
(tests/mount/tinyfs.py): readiness, foreground, unmount, signals, failures."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.mount.tinyfs import HELLO
from tests.support.fusemount import (
    LOG_ENV,
    mount_entry,
    mount_info,
    mounted,
    pid_alive,
    wait_for,
)

TINYFS = [sys.executable, "-m", "tests.mount.tinyfs"]


@pytest.fixture
def layout(tmp_path):
    (tmp_path / "mnt").mkdir()
    (tmp_path / "lower").mkdir()
    return tmp_path


def tinyfs_argv(layout, *flags):
    return [*TINYFS, *flags, "-o", f"lowerdir={layout / 'lower'}", str(layout / "mnt")]


def run(argv, env=None, **kwargs):
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_command_returns_only_once_the_mount_serves(layout):
    mnt = layout / "mnt"
    log = layout / "log"
    try:
        result = run(tinyfs_argv(layout), env={LOG_ENV: str(log)})
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mnt)  # no polling: it must be live right now
        assert (mnt / "hello").read_bytes() == HELLO
        assert result.stdout == "" and result.stderr == ""
    finally:
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)], capture_output=True)
    wait_for(lambda: "unmounted" in log.read_text(), "the daemon to log its exit")
    assert "Traceback" not in log.read_text()


def test_daemon_detaches(layout):
    with mounted(tinyfs_argv(layout), layout / "mnt", cwd=ROOT) as m:
        assert m.process.returncode == 0
        pid = m.server_pid()
        assert pid is not None and pid != m.process.pid
        assert os.getsid(pid) == pid  # its own session, no terminal
        assert os.readlink(f"/proc/{pid}/cwd") == "/"
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{pid}/fd/2") == str(m.log_path)


def test_fusermount_unmount_ends_the_daemon(layout):
    with mounted(tinyfs_argv(layout), layout / "mnt", cwd=ROOT) as m:
        pid = m.server_pid()
        m.unmount()
        assert not pid_alive(pid)
        assert mount_entry(layout / "mnt") is None
        assert "(from outside); exiting" in m.log()


def test_foreground_stays_and_exits_0_on_unmount(layout):
    with mounted(tinyfs_argv(layout, "-f"), layout / "mnt", cwd=ROOT) as m:
        assert m.process.poll() is None
        assert (layout / "mnt" / "hello").read_bytes() == HELLO
        m.unmount()
        assert m.process.returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_unmounts_and_exits_0(layout, signum):
    with mounted(tinyfs_argv(layout, "-f"), layout / "mnt", cwd=ROOT) as m:
        m.process.send_signal(signum)
        assert m.process.wait(30) == 0
        assert mount_entry(layout / "mnt") is None


def test_sigterm_to_the_daemon_unmounts(layout):
    with mounted(tinyfs_argv(layout), layout / "mnt", cwd=ROOT) as m:
        pid = m.server_pid()
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not pid_alive(pid), "the daemon to exit")
        assert mount_entry(layout / "mnt") is None
        assert "received SIGTERM: unmounting" in m.log()


def test_debug_stays_in_the_foreground_and_logs_to_stderr(layout):
    with mounted(tinyfs_argv(layout, "-d"), layout / "mnt", cwd=ROOT) as m:
        assert m.process.poll() is None
        (layout / "mnt" / "hello").read_bytes()
        m.unmount()
    assert "DEBUG" in m.stderr()


def test_crash_keeps_the_mount_and_reports_enotconn(layout):
    """A crash must not look like a clean unmount (writes would land in the bare dir)."""
    with mounted(tinyfs_argv(layout), layout / "mnt", cwd=ROOT, allow_traceback=True) as m:
        pid = m.server_pid()
        with pytest.raises(OSError):
            (layout / "mnt" / "crash").read_bytes()
        wait_for(lambda: not pid_alive(pid), "the crashed daemon to exit")
        assert mount_entry(layout / "mnt") is not None
        with pytest.raises(OSError) as error:
            os.listdir(layout / "mnt")  # (a stat may be answered from the attr cache)
        assert error.value.errno == errno.ENOTCONN
        assert "deliberate crash" in m.log() and "Traceback" in m.log()


def test_death_before_serving_is_reported_and_unmounted(layout):
    result = run(tinyfs_argv(layout), env={"TINYFS_BROKEN_ROOT": "1",
                                           LOG_ENV: str(layout / "log")})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "crashed before serving" in result.stderr
    assert "deliberately broken root" in result.stderr
    assert mount_entry(layout / "mnt") is None


@pytest.mark.parametrize("options, message", [
    ("lowerdir={missing}", "lowerdir '{missing}' does not exist"),
    ("lowerdir={lower},upperdir={lower}/../u", "upperdir '{lower}/../u' does not exist"),
    ("upperdir=x", "no lowerdir specified (-o lowerdir=TOP:...:BOTTOM)"),
])
def test_bad_options_one_line_exit_1_nothing_mounted(layout, options, message):
    names = {"missing": layout / "missing", "lower": layout / "lower"}
    result = run([*TINYFS, "-o", options.format(**names), str(layout / "mnt")])
    assert result.returncode == 1
    assert result.stderr == f"layerbox-overlayfs: {message.format(**names)}\n"
    assert mount_entry(layout / "mnt") is None


def test_mount_failure_is_one_line(layout):
    """What libfuse refuses is reported by the foreground process as one line."""
    code = ("import sys; from overlayfs.options import parse_command_line;"
            "from overlayfs.mount import serve; from tests.mount.tinyfs import TinyOperations;"
            "c = parse_command_line(sys.argv[1:]);"
            "sys.exit(serve(c, TinyOperations(), {'bogus_fuse_option'}))")
    result = run([sys.executable, "-c", code, "-o", f"lowerdir={layout / 'lower'}",
                  str(layout / "mnt")])
    assert result.returncode == 1
    assert result.stderr.startswith(f"layerbox-overlayfs: cannot mount on '{layout / 'mnt'}'")
    assert "bogus_fuse_option" in result.stderr
    assert result.stderr.count("\n") == 1
    assert mount_entry(layout / "mnt") is None


def test_unknown_option_warns_but_mounts(layout):
    argv = [*TINYFS, "-o", f"lowerdir={layout / 'lower'},frobnicate", str(layout / "mnt")]
    with mounted(argv, layout / "mnt", cwd=ROOT) as m:
        assert (layout / "mnt" / "hello").read_bytes() == HELLO
    assert m.stderr() == "layerbox-overlayfs: warning: unknown option 'frobnicate' ignored\n"


def test_kernel_flags_reach_the_mount(layout):
    argv = [*TINYFS, "-o", f"lowerdir={layout / 'lower'},nosuid,nodev,noexec",
            str(layout / "mnt")]
    with mounted(argv, layout / "mnt", cwd=ROOT):
        assert {"nosuid", "nodev", "noexec"} <= mount_info(layout / "mnt")["options"]
