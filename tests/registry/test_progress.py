"""Progress output: Docker's units and bars, and a pull on a terminal redraws layer lines."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

from cli.registry.progress import Progress, bar, human_size
from tests.support.images import REPO_ROOT, layerbox


def test_human_size_and_bar():
    assert [human_size(n) for n in (0, 999, 1000, 1_234_567, 3.4e9)] == \
        ["0B", "999B", "1kB", "1.235MB", "3.4GB"]
    assert bar(50, 100) == f"[{'=' * 24}>{' ' * 25}]      50B/100B"
    assert bar(100, 100).startswith("[" + "=" * 50 + "]")


def test_plain_output_drops_byte_counts():
    out = io.StringIO()
    progress = Progress(out, tty=False)
    progress.status("abc", "Pulling fs layer")
    progress.bytes("abc", "Downloading", 10, 100)
    progress.status("abc", "Pull complete")
    assert out.getvalue() == "abc: Pulling fs layer\nabc: Pull complete\n"


def test_terminal_redraws_each_layer_line():
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.status("aaa", "Pulling fs layer")
    progress.status("bbb", "Pulling fs layer")
    progress.status("aaa", "Pull complete")
    assert out.getvalue().endswith("\x1b[2A\x1b[2K\raaa: Pull complete\x1b[2B\r")


def test_pull_on_a_terminal(registry, busybox_root, tmp_path):
    name = f"{registry.host}/tty/bb:1"
    layerbox(busybox_root, "tag", "busybox", name)
    layerbox(busybox_root, "push", name)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", "--root",
                                 str(tmp_path / "fresh"), "pull", name],
                                stdout=slave, stderr=slave, cwd=REPO_ROOT)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(master)
    text = b"".join(chunks).decode()
    assert "Downloading [" in text and "\x1b[2K" in text
    assert "Pull complete" in text and f"Status: Downloaded newer image for {name}" in text
