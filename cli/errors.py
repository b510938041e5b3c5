"""Errors a user can cause and fix. The CLI prints them as one line, never a traceback."""


class UserError(Exception):
    """A failure explained by its message alone; ``exit_code`` follows Docker's CLI."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
