"""Errors avgen reports to users.

Every error a user can cause derives from :class:`AvgenError` and carries a message that
names the problem (which input, which value, what is allowed), so the CLI and the portal can
show it as is.
"""

from __future__ import annotations


class AvgenError(Exception):
    """Base class of errors with a user-readable message."""


class InvalidInputError(AvgenError, ValueError):
    """A user input (user id, prompt, script, option, file) is not acceptable."""


class NoFaceError(InvalidInputError):
    """An image that must show a face (a portrait) has none that the detector finds."""


class MediaError(AvgenError):
    """A media file cannot be read, decoded, encoded or validated."""


class BackendError(AvgenError):
    """A generation backend cannot load its model or produce output."""


class ContentStoreError(AvgenError):
    """The content store (local folder or object store) cannot be read or written."""


class DatabaseUnavailableError(AvgenError):
    """The app database cannot be reached or opened (the message hides any password)."""
