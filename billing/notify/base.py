"""What one delivery attempt returns, whichever the channel."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attempt:
    ok: bool
    response_code: int | None = None
    error: str = ""


class NotDeliverable(Exception):
    """A delivery that can never succeed as it is (no recipient left, channel removed): not retried."""
