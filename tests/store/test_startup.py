"""What the read-only commands load, and that logging still behaves once it is lazy.

The issue's start-up budget (``images``, ``inspect``, ``history``, ``diff`` ≤ 0.1 s and
``diff`` of 1,000 changes ≤ 0.06 s) is measured by scripts/bench-tool; these tests keep
the structure that makes it possible: none of these commands imports FUSE, trio,
dataclasses or logging, unless it logs.
"""

import subprocess
import sys

import pytest

from tests.support.images import REPO_ROOT

#: Modules that the read-only verbs must not import.
HEAVY = ("pyfuse3", "trio", "dataclasses", "logging", "subprocess", "typing")

_PROBE = """
import contextlib, io, sys
from cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
print(code, *sorted(m for m in {heavy!r} if m in sys.modules))
"""


def _modules_loaded_by(root, *args: str) -> tuple[str, list[str]]:
    probe = _PROBE.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe, "--root", str(root), *args],
                         capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    code, *loaded = out.stdout.split()
    return code, loaded


@pytest.mark.parametrize("args", [("images",), ("image", "inspect", "busybox"),
                                  ("history", "busybox"), ("ps", "-a")])
def test_read_only_verbs_import_nothing_heavy(busybox_root, args):
    assert _modules_loaded_by(busybox_root, *args) == ("0", [])


def test_diff_imports_nothing_heavy(busybox_root):
    from tests.support.images import layerbox
    layerbox(busybox_root, "create", "--name", "c1", "busybox", "true")
    code, loaded = _modules_loaded_by(busybox_root, "diff", "c1")
    assert (code, loaded) == ("0", [])


def _run_logging(debug: bool) -> str:
    program = ("from cli import logs; logs.configure(%r); log = logs.get('cli.probe'); "
               "log.debug('detail %%s', 1); log.warning('careful %%s', 2)" % debug)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          cwd=REPO_ROOT, check=True).stderr


def test_lazy_loggers_print_warnings_as_before():
    assert _run_logging(False) == "WARNING cli.probe: careful 2\n"


def test_lazy_loggers_honour_debug():
    assert _run_logging(True) == "DEBUG cli.probe: detail 1\nWARNING cli.probe: careful 2\n"


def test_logging_imported_first_is_configured_at_once():
    # A module that needs logging itself (the monitor's spawner) gets it configured.
    program = ("import logging; from cli import logs; logs.configure(True); "
               "print(logging.getLogger().isEnabledFor(logging.DEBUG))")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         cwd=REPO_ROOT, check=True).stdout
    assert out == "True\n"
