"""Error classes whose messages are written for the person who made the request.

Everything the library raises on purpose derives from `SDEditError`; the app shows its message as is
and keeps serving. Anything else is a bug and is reported as one.
"""

from __future__ import annotations


class SDEditError(Exception):
    """A problem the user can act on; the message says what was wrong and what is allowed."""


class InputError(SDEditError, ValueError):
    """A bad image, mask or setting."""


class LimitError(InputError):
    """A request over a resource limit (pixels, samples x steps, bytes)."""


class ModelNotFoundError(SDEditError, LookupError):
    """An unknown model name, or a Hub model that can't be fetched (offline, private, missing).

    `repo_id` names the Hub repo when there is one, so a UI can word its own hint."""

    def __init__(self, message: str, repo_id: str | None = None):
        super().__init__(message)
        self.repo_id = repo_id


class ModelLoadError(SDEditError):
    """A model folder that exists but can't be loaded as an SDEdit score model."""


class BusyError(SDEditError):
    """The server is at capacity; try again in a moment."""


class OutOfMemoryError(SDEditError):
    """The accelerator ran out of memory for this request; caches were freed."""
