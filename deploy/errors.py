"""Errors a board user sees: each message names what is wrong and what to do."""


class DeployError(Exception):
    """A deployment package cannot be used as asked."""


class BoardMismatchError(DeployError):
    """The package was built for another board than the one it is loaded on."""


class PackageIntegrityError(DeployError):
    """A package file is missing, unreadable, or differs from its manifest checksum."""


class InputError(DeployError, ValueError):
    """Input of the wrong shape, dtype or value range, refused before any DMA transfer."""
