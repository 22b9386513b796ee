"""What can go wrong when talking to a provider, and what the sync does about it."""

from __future__ import annotations


class ProviderError(Exception):
    """Base class; messages never contain credentials."""


class ProviderUnavailable(ProviderError):
    """Timeouts, connection failures, 429 and 5xx: retried with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CredentialsRejected(ProviderError):
    """401/403 (or an error that says the key is invalid): stop, mark the credentials invalid."""


class BadAnswer(ProviderError):
    """Malformed JSON, an unexpected shape or `success: false`: a sync error that overwrites nothing."""


class NotConfigured(ProviderError):
    """The account lacks what the adapter needs (credentials, a user id…)."""
