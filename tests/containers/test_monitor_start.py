"""How the client starts a container's monitor: forked from the client (the default when
nothing straddles the fork) or as a new interpreter (``LAYERBOX_MONITOR_EXEC=1``, and
whenever the client runs other threads). Both must behave the same, and the forked
monitor must be as detached as the other: own session, stdio on monitor.log, nothing of
the client's left open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import REPO_ROOT


def _cli(root, *args, exec_monitor: bool, check: bool = True):
    env = {**os.environ}
    env.pop("LAYERBOX_MONITOR_EXEC", None)
    if exec_monitor:
        env["LAYERBOX_MONITOR_EXEC"] = "1"
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("exec_monitor", [False, True], ids=["fork", "exec"])
def test_run_rm_is_the_same_either_way(root, exec_monitor):
    proc = _cli(root, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                "echo out; echo err >&2; exit 7", exec_monitor=exec_monitor, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (7, "out\n", "err\n")
    # --rm: gone when run returns, as docker's
    assert _cli(root, "ps", "-aq", exec_monitor=False).stdout == ""
    assert os.listdir(root / "containers") == []
    kept = _cli(root, "run", "--name", "kept", "--network", "none", "busybox", "echo", "hi",
                exec_monitor=exec_monitor)
    assert kept.stdout == "hi\n"
    assert _cli(root, "logs", "kept", exec_monitor=False).stdout == "hi\n"


@pytest.mark.parametrize("exec_monitor", [False, True], ids=["fork", "exec"])
def test_monitor_is_detached(root, exec_monitor):
    cid = _cli(root, "run", "-d", "--name", "bg", "--network", "none", "busybox", "sleep",
               "300", exec_monitor=exec_monitor).stdout.strip()
    state = json.loads(_cli(root, "inspect", "bg", exec_monitor=False).stdout)[0]["State"]
    pid = state["MonitorPid"]
    assert pid > 0
    assert os.getsid(pid) != os.getsid(0)          # a session of its own
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        exec_cmdline = b"cli.monitor" in f.read()
    assert exec_cmdline == exec_monitor            # the path under test was taken
    with open(f"/proc/{pid}/comm") as f:
        assert (f.read().strip() == "layerbox-monito") == (not exec_monitor)
    fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert fds[0] == os.devnull
    log = str(root / "containers" / cid / "monitor.log")
    assert fds[1] == fds[2] == log
    # What the client had open (its terminal or pipes, its own db connection, the
    # readiness pipe) is not: the monitor's files are its container's and the store's.
    allowed = (str(root), "pipe:", "socket:", "anon_inode:", "/dev/ptmx", "/dev/pts/",
               os.devnull)
    assert [t for t in fds.values() if not t.startswith(allowed)] == []
    db_fds = [t for t in fds.values() if t == str(root / "layerbox.db")]
    assert len(db_fds) == 1                        # its own connection only
    _cli(root, "rm", "-f", "bg", exec_monitor=False)
    assert not (root / "containers" / cid).exists()


def _failing_mount_program(tmp_path):
    """A stand-in named like ours (so `run` starts it early and hands it the options on
    stdin), refusing every mount the way ours reports a refusal."""
    program = tmp_path / "bin" / "layerbox-overlayfs"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\ncat >/dev/null\n"
                       "echo \"layerbox-overlayfs: cannot mount on '$2': refused for the test\" >&2\n"
                       "exit 1\n")
    program.chmod(0o755)
    return program


@pytest.mark.parametrize("exec_monitor", [False, True], ids=["fork", "exec"])
def test_a_mount_failure_is_the_runs_one_line_error(root, tmp_path, exec_monitor, monkeypatch):
    """Forked, the monitor learns of the mount from the client (the mount program is the
    client's child); exec'd, it mounts itself. The user sees the same either way."""
    monkeypatch.setenv("LAYERBOX_MOUNT_PROGRAM", str(_failing_mount_program(tmp_path)))
    proc = _cli(root, "run", "--name", "m", "--network", "none", "busybox", "true",
                exec_monitor=exec_monitor, check=False)
    assert proc.returncode == 125
    assert proc.stderr.startswith("Error: cannot mount the container's root filesystem: "
                                  "layerbox-overlayfs: cannot mount on '")
    assert proc.stderr.endswith("': refused for the test\n") and proc.stderr.count("\n") == 1
    monkeypatch.delenv("LAYERBOX_MOUNT_PROGRAM")
    state = json.loads(_cli(root, "inspect", "m", exec_monitor=False).stdout)[0]["State"]
    assert state["Status"] == "exited" and "refused for the test" in state["Error"]


def test_a_run_that_fails_before_the_container_exists_leaves_no_mount_program(root):
    """`run` starts the mount program before it looks for the image."""
    proc = _cli(root, "run", "--pull", "never", "--rm", "no-such-image:1", "true",
                exec_monitor=False, check=False)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1
    waiting = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if b"--args-on-stdin" in cmdline and os.fsencode(root) in cmdline:
            waiting.append(pid)
    assert waiting == []
    assert os.listdir(root / "containers") == []


def test_another_installs_mount_program_first_on_path_gets_its_command_line_in_argv(
        root, tmp_path, monkeypatch):
    """An older layerbox-overlayfs ahead on PATH (a system link to another checkout) knows
    no --args-on-stdin: run must not start it early, only the usual way."""
    real = Path(sys.executable).parent / "layerbox-overlayfs"
    program = tmp_path / "bin" / "layerbox-overlayfs"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\n"
                       "[ \"$1\" = --args-on-stdin ] && { echo 'unknown: '$1 >&2; exit 1; }\n"
                       f"exec {real} \"$@\"\n")
    program.chmod(0o755)
    monkeypatch.delenv("LAYERBOX_MOUNT_PROGRAM", raising=False)
    monkeypatch.setenv("PATH", f"{program.parent}{os.pathsep}{os.environ['PATH']}")
    proc = _cli(root, "run", "--rm", "--network", "none", "busybox", "echo", "ok",
                exec_monitor=False)
    assert proc.stdout == "ok\n"
