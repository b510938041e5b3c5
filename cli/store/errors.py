"""The store's named errors. All are user errors: the CLI prints their one-line message."""

from cli.errors import UserError


class StoreError(UserError):
    """Something about the store or an archive that the user must look at."""


class BlobCorrupt(StoreError):
    """A blob's bytes do not hash to its digest (disk damage, truncation, tampering)."""


class NoSuchImage(StoreError):
    def __init__(self, name: str):
        super().__init__(f"No such image: {name}")
        self.name = name


class ImageConflict(StoreError):
    """An image cannot be removed (in use, or ambiguous) without --force."""
