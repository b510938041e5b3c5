"""Fixtures for real-mount union tests: each test runs on the kernel overlay (the
oracle) and on the FUSE program under test (``$LAYERBOX_FS_UNDER_TEST``)."""

import os

import pytest

from tests.support.overlay import (KERNEL, UnionFactory, fresh_base, fs_under_test,
                                   is_fuse_overlayfs, remove_base)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def pytest_generate_tests(metafunc):
    """Every test runs on the kernel and on the program under test, except those
    marked ``program_only``: conventions the kernel overlay does not have (``.wh.``
    files, user-namespace opaque xattrs) have no oracle to compare with."""
    if "impl" in metafunc.fixturenames:
        only_program = metafunc.definition.get_closest_marker("program_only")
        metafunc.parametrize("impl", ["under-test"] if only_program else [KERNEL, "under-test"],
                             indirect=True)


@pytest.fixture
def impl(request) -> str:
    if os.geteuid() != 0:
        pytest.skip("mounting the kernel overlay and fuse as allow_other needs root")
    return KERNEL if request.param == KERNEL else fs_under_test()


@pytest.fixture
def union(impl):
    """``union(lower_top, ..., upper={...}, writable=True, redirect_dir=False)`` -> Union."""
    base = fresh_base()
    factory = UnionFactory(impl, base)
    try:
        yield factory
    finally:
        factory.close()
        remove_base(base)


@pytest.fixture
def known_difference(request, impl):
    """``known_difference("why")``: expected to fail on Debian's fuse-overlayfs only
    (an xfail there, never for the kernel or our program)."""
    def mark(reason: str) -> None:
        if is_fuse_overlayfs(impl):
            request.applymarker(pytest.mark.xfail(reason=f"fuse-overlayfs: {reason}",
                                                  strict=False))
    return mark
