"""The one error type of the Dockerfile front end: a reason plus where it happened.

``str(err)`` is ``Dockerfile:7: unknown instruction: FORM`` (file and first line, then the
reason in Docker's wording); ``err.docker_message`` is what BuildKit prints,
``dockerfile parse error on line 7: unknown instruction: FORM``.
"""

from __future__ import annotations

from cli.errors import UserError


class DockerfileError(UserError):
    """A Dockerfile (or .dockerignore) the user must fix, located by file and line."""

    def __init__(self, reason: str, filename: str = "Dockerfile", line: int = 0,
                 end_line: int | None = None):
        self.reason = reason
        self.filename = filename
        self.line = line
        self.end_line = end_line if end_line is not None else line
        super().__init__(f"{filename}:{line}: {reason}" if line else f"{filename}: {reason}")

    @property
    def docker_message(self) -> str:
        return f"dockerfile parse error on line {self.line}: {self.reason}"


class LocatedReason(Exception):
    """Raised inside the front end without a location; the caller adds file and line."""
