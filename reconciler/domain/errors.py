"""The project's own error types.

Adapters translate library errors into these in one place (``raise ... from e``) so the
pipeline only has to know two things about a failure: may it be retried (temporary) or
must the recommendation be rejected with a reason (permanent).
"""

from __future__ import annotations


class ReconcilerError(Exception):
    """Base of every error the reconciler raises on purpose."""


class TemporaryError(ReconcilerError):
    """Worth retrying with backoff: the same call may succeed later."""


class PermanentError(ReconcilerError):
    """Retrying will not help: reject or fail with this reason."""


class ConflictError(TemporaryError):
    """Optimistic concurrency lost: someone else wrote first. Re-read, re-decide, retry."""


class ExpiredError(TemporaryError):
    """A watch asked for history the server no longer keeps (HTTP 410 Gone): list again and
    watch from the list's version, as an informer does."""


class NotFoundError(PermanentError):
    """The object asked for does not exist."""


class ConfigError(PermanentError):
    """Unusable settings or command-line input (the CLI exits 2)."""


class FieldError(PermanentError):
    """One problem with one field of an input document."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class ValidationError(PermanentError):
    """An input document was rejected; ``errors`` names every offending field."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class InputLimitError(ConfigError):
    """Untrusted input broke one of the input limits (``domain.limits``): refused before it
    could take the process's time or memory; the message names the limit and its setting."""
