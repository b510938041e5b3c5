"""Fixtures for the container tests: a busybox store root whose containers are all
force-removed (and whose mounts must be gone) at the end of each test."""

from __future__ import annotations

import pytest

from tests.support.images import busybox_root  # noqa: F401
from tests.support.images import busybox_store_template, busybox_tar, layerbox  # noqa: F401


@pytest.fixture
def root(busybox_root):
    """A store root with busybox:latest; every container in it is removed afterwards."""
    yield busybox_root
    ids = layerbox(busybox_root, "ps", "-aq", "--no-trunc", check=False).stdout.split()
    if ids:
        layerbox(busybox_root, "rm", "-f", *ids, check=False)
    with open("/proc/self/mountinfo") as f:
        left = [line.split()[4] for line in f if str(busybox_root) in line.split()[4]]
    assert not left, f"mounts left behind: {left}"
