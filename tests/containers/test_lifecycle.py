"""Container lifecycle through the real CLI: create/start/stop/kill/restart/rm, ps, logs,
exec, inspect, wait, pause, prune; a dead monitor; bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.images import REPO_ROOT, layerbox


def state(root, name) -> dict:
    return json.loads(layerbox(root, "inspect", name).stdout)[0]["State"]


def test_run_output_exit_code_and_logs(root):
    out = layerbox(root, "run", "--name", "t", "busybox", "sh", "-c",
                   "echo out; echo err >&2; exit 3", check=False)
    assert (out.returncode, out.stdout, out.stderr) == (3, "out\n", "err\n")
    logs = layerbox(root, "logs", "t")
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    assert layerbox(root, "diff", "t").stdout == ""      # nothing changed, nothing listed
    ps = layerbox(root, "ps", "-a").stdout.splitlines()
    assert ps[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                             "NAMES"]
    assert "Exited (3)" in ps[1] and ps[1].endswith("t")
    assert layerbox(root, "ps").stdout.splitlines()[1:] == []


def test_run_flags_reach_the_process(root, tmp_path):
    env_file = tmp_path / "env"
    env_file.write_text("# comment\nFROM_FILE=yes\n")
    out = layerbox(root, "run", "--rm", "-e", "A=1", "--env-file", str(env_file), "-w", "/work",
                   "-u", "nobody", "--hostname", "box", "busybox", "sh", "-c",
                   'echo "$A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname) $HOME"; '
                   "cat /etc/hostname; ulimit -n -H; grep '^Seccomp:' /proc/self/status"
                   ).stdout.split()
    hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout)
    assert out[:7] == ["1", "yes", "/work", "65534:65534", "box", "/home", "box"]
    assert int(out[7]) <= hard
    assert out[8:] == ["Seccomp:", "2"]               # a seccomp filter is in force
    assert layerbox(root, "ps", "-aq").stdout == ""      # --rm removed it


def test_stdin_is_forwarded_with_i(root):
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "run", "--rm",
                           "-i", "busybox", "sh", "-c", "tr a-z A-Z; echo done"],
                          input=b"hello\n", capture_output=True, cwd=REPO_ROOT, timeout=60)
    assert proc.stdout == b"HELLO\ndone\n" and proc.returncode == 0


def test_detached_lifecycle(root):
    cid = layerbox(root, "run", "-d", "--name", "bg", "busybox", "sh", "-c",
                   "trap 'exit 42' TERM; echo ready; while :; do sleep 1; done").stdout.strip()
    assert len(cid) == 64
    assert layerbox(root, "ps", "-q").stdout.strip() == cid[:12]
    assert state(root, "bg")["Running"] is True
    assert layerbox(root, "exec", "bg", "cat", "/etc/hostname").stdout == cid[:12] + "\n"
    assert layerbox(root, "exec", "bg", "sh", "-c", "exit 4", check=False).returncode == 4
    layerbox(root, "pause", "bg")
    assert "(Paused)" in layerbox(root, "ps").stdout
    layerbox(root, "unpause", "bg")
    # the prefix of the id names it too
    assert layerbox(root, "stop", "-t", "20", cid[:8]).stdout.strip() == cid[:8]
    assert state(root, "bg")["ExitCode"] == 42
    assert layerbox(root, "wait", "bg").stdout.strip() == "42"
    assert "ready\n" in layerbox(root, "logs", "bg").stdout
    layerbox(root, "start", "bg")
    assert state(root, "bg")["Status"] == "running"
    layerbox(root, "restart", "-t", "20", "bg")
    assert state(root, "bg")["Status"] == "running"
    layerbox(root, "kill", "-s", "TERM", "bg")
    assert layerbox(root, "wait", "bg").stdout.strip() == "42"
    layerbox(root, "rm", "bg")
    assert layerbox(root, "ps", "-aq").stdout == ""
    assert not (root / "containers" / cid).exists()


def test_stop_kills_what_ignores_sigterm(root):
    layerbox(root, "run", "-d", "--name", "stubborn", "busybox", "sleep", "300")
    layerbox(root, "stop", "-t", "1", "stubborn")          # PID 1 ignores SIGTERM
    assert state(root, "stubborn")["ExitCode"] == 137


def test_create_start_attach_and_prune(root):
    layerbox(root, "create", "--name", "c1", "busybox", "echo", "hi")
    assert "Created" in layerbox(root, "ps", "-a").stdout
    assert layerbox(root, "start", "-a", "c1").stdout == "hi\n"
    rows = [json.loads(line) for line in layerbox(root, "ps", "-a", "--format",
                                                   "json").stdout.splitlines()]
    assert rows[0]["Names"] == "c1" and rows[0]["State"] == "exited"
    assert rows[0]["Command"] == '"echo hi"'
    out = layerbox(root, "container", "prune", "-f").stdout
    assert "Deleted Containers:" in out
    assert layerbox(root, "ps", "-aq").stdout == ""


def test_rm_refuses_running_and_force_cleans_up(root):
    cid = layerbox(root, "run", "-d", "--name", "r", "busybox", "sleep", "300").stdout.strip()
    refused = layerbox(root, "rm", "r", check=False)
    assert refused.returncode != 0 and "Stop the container" in refused.stderr
    layerbox(root, "rm", "-f", "r")
    assert not (root / "containers" / cid).exists()


def test_dead_monitor_is_reported_and_rm_f_cleans_up(root):
    cid = layerbox(root, "run", "-d", "--name", "d", "busybox", "sleep", "300").stdout.strip()
    monitor = state(root, "d")["MonitorPid"]
    os.kill(monitor, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while state(root, "d")["Status"] != "dead":
        assert time.monotonic() < deadline, "a killed monitor is not reported"
    assert "Dead" in layerbox(root, "ps", "-a").stdout
    failed = layerbox(root, "exec", "d", "true", check=False)
    assert failed.returncode != 0 and "monitor died" in failed.stderr
    layerbox(root, "rm", "-f", "d")
    assert not (root / "containers" / cid).exists()


@pytest.mark.parametrize("args, message", [
    (["diff", "nope"], "Error: No such container: nope"),
    (["commit", "nope"], "Error: No such container: nope"),
    (["stop", "nope"], "Error: No such container: nope"),
    (["run", "--pull", "never", "missing:image", "true"], "Error: No such image: missing:image"),
    (["run", "--rm", "busybox", "no-such-command"], "executable file not found"),
])
def test_bad_input_gets_one_clear_line(root, args, message):
    out = layerbox(root, *args, check=False)
    assert out.returncode != 0
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_name_in_use_and_invalid_change(root):
    layerbox(root, "create", "--name", "taken", "busybox", "true")
    out = layerbox(root, "create", "--name", "taken", "busybox", "true", check=False)
    assert out.returncode != 0 and 'name "/taken" is already in use' in out.stderr
    images_before = layerbox(root, "images", "-q").stdout
    out = layerbox(root, "commit", "-c", "RUN echo hi", "taken", "x:y", check=False)
    assert out.returncode != 0 and len(out.stderr.strip().splitlines()) == 1
    assert layerbox(root, "images", "-q").stdout == images_before


def test_commit_changes_and_untagged(root):
    layerbox(root, "run", "--name", "w", "busybox", "sh", "-c", "echo v > /v")
    image_id = layerbox(root, "commit", "-c", 'CMD ["cat", "/v"]', "-c", "ENV X=1",
                        "-c", "WORKDIR /tmp", "--pause=false", "w").stdout.strip()
    config = json.loads(layerbox(root, "image", "inspect", image_id).stdout)[0]["Config"]
    assert config["Cmd"] == ["cat", "/v"] and "X=1" in config["Env"]
    assert config["WorkingDir"] == "/tmp"
    assert "<none>" in layerbox(root, "images").stdout
    assert layerbox(root, "run", "--rm", image_id[7:19]).stdout == "v\n"


def test_logs_follow_ends_with_the_container(root):
    layerbox(root, "run", "-d", "--name", "f", "busybox", "sh", "-c",
             "echo one; sleep 1; echo two")
    assert layerbox(root, "logs", "-f", "f").stdout == "one\ntwo\n"


def test_attach_to_non_tty_container_with_stdin(root):
    layerbox(root, "run", "-d", "-i", "--name", "reader", "busybox", "sh", "-c",
             "read line; echo got $line; exit 9")
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "attach",
                           "reader"], input=b"hello\n", capture_output=True, cwd=REPO_ROOT,
                          timeout=60)
    assert (proc.returncode, proc.stdout) == (9, b"got hello\n")


def test_start_attach_interactive(root):
    layerbox(root, "create", "-i", "--name", "cat", "busybox", "cat")
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "start", "-a",
                           "-i", "cat"], input=b"through\n", capture_output=True,
                          cwd=REPO_ROOT, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, b"through\n")


def test_network_modes(root):
    own = layerbox(root, "run", "--rm", "--network", "none", "busybox", "cat",
                   "/proc/net/dev").stdout
    assert [line.split(":")[0].strip() for line in own.splitlines()[2:]] == ["lo"]
    bridged = layerbox(root, "run", "--rm", "busybox", "cat", "/proc/net/dev").stdout
    assert sorted(line.split(":")[0].strip() for line in bridged.splitlines()[2:]) == \
        ["lo", "tap0"]
    host_hostname = os.uname().nodename
    assert layerbox(root, "run", "--rm", "--network", "host", "busybox",
                    "hostname").stdout.strip() == host_hostname


def test_missing_mount_program_is_one_clear_error(root):
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--root", str(root), "run",
                           "--name", "m", "busybox", "true"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60,
                          env={**os.environ, "LAYERBOX_MOUNT_PROGRAM": "no-such-mounter"})
    assert proc.returncode == 125
    assert proc.stderr == "Error: mount program not found: no-such-mounter\n"
    assert state(root, "m")["Status"] == "exited"


def _mount_server_pids(merged: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    args = f.read().split(b"\0")
            except OSError:
                continue
            if merged.encode() in args:
                pids.append(int(entry))
    return pids


def test_dead_mount_is_reported_and_rm_f_cleans_up(root):
    cid = layerbox(root, "run", "-d", "--name", "m", "busybox", "sh", "-c",
                   "touch /before; sleep 300").stdout.strip()
    merged = str(root / "containers" / cid / "merged")
    servers = _mount_server_pids(merged)
    assert servers, "no mount server found for the container"
    for pid in servers:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while "mount died" not in state(root, "m")["Error"]:
        assert time.monotonic() < deadline, "a dead mount is not reported"
    assert "(mount died)" in layerbox(root, "ps").stdout
    assert "A /before" in layerbox(root, "diff", "m").stdout     # upper/ is still readable
    layerbox(root, "rm", "-f", "m")
    assert not (root / "containers" / cid).exists()


def test_run_to_exit_for_builders(root):
    from cli import commit, containers
    from cli.create_options import CreateOptions
    from cli.store.store import Store
    read_fd, write_fd = os.pipe()
    with Store.open(root) as store:
        container, code = containers.run_to_exit(
            store, CreateOptions(image="busybox", command=[
                "sh", "-c", "echo built > /artifact; echo log-line; exit 0"]),
            out_fd=write_fd, err_fd=write_fd)
        os.close(write_fd)
        assert (code, container.status()) == (0, "exited")
        assert os.read(read_fd, 1000) == b"log-line\n"
        image = commit.commit(store, container, message="RUN build")
        containers.remove(store, container)
    os.close(read_fd)
    assert layerbox(root, "run", "--rm", image.id, "cat", "/artifact").stdout == "built\n"


def test_client_signals_reach_a_non_tty_container(root):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--root", str(root), "run", "--name", "sig",
         "busybox", "sh", "-c", "trap 'echo got-int; exit 5' INT; echo ready; "
         "while :; do sleep 1; done"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT)
    try:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGINT)           # Docker's sig-proxy: forwarded, not fatal
        assert proc.wait(timeout=60) == 5
        assert proc.stdout.read() == b"got-int\n"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
