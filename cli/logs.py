"""The command's loggers, without importing logging until one is used.

``logging`` (with traceback, tokenize, string and threading) is ~5 ms of every
command's start-up, and ``images``, ``diff`` or ``inspect`` usually log nothing. So the
modules of ``cli`` take their logger from :func:`get`, and :func:`configure` (called by
``cli.main`` once the command line is parsed) applies ``-D`` to logging whenever
logging is first needed: by a logger in use, or by :func:`module`.
"""

from __future__ import annotations

import sys

FORMAT = "%(levelname)s %(name)s: %(message)s"

_pending: dict | None = None


def configure(debug: bool) -> None:
    """Log warnings (everything with DEBUG) to stderr, as ``layerbox`` always has."""
    global _pending
    _pending = {"level": 10 if debug else 30, "format": FORMAT}   # logging.DEBUG, WARNING
    if "logging" in sys.modules:
        module()


def module():
    """The logging module, configured as :func:`configure` asked."""
    global _pending
    import logging
    if _pending is not None:
        settings, _pending = _pending, None
        logging.basicConfig(**settings)
    return logging


class _Logger:
    """Stands for ``logging.getLogger(name)`` until its first use."""

    __slots__ = ("_name", "_logger")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger = None

    def __getattr__(self, attr: str):
        if self._logger is None:
            self._logger = module().getLogger(self._name)
        return getattr(self._logger, attr)


def get(name: str) -> _Logger:
    return _Logger(name)
