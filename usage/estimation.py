"""Token estimates for records that arrive without usage (DESIGN.md §5).

Every estimator answers the same small question (`estimate(lengths)`), so the
calibrated one can replace the fallback without touching ingestion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

CLASSES = ("cjk", "letters", "digits", "spaces", "punct", "other")
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@dataclass(frozen=True, slots=True)
class Lengths:
    """What was logged about a request's text, never the text itself."""

    context_chars: int | None = None
    context_bytes: int | None = None
    output_chars: int | None = None
    output_bytes: int | None = None
    message_count: int | None = None
    context_profile: dict[str, int] | None = None
    output_profile: dict[str, int] | None = None

    @property
    def has_any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.context_chars,
                self.context_bytes,
                self.output_chars,
                self.output_bytes,
                self.context_profile,
                self.output_profile,
            )
        )


@dataclass(frozen=True, slots=True)
class Estimate:
    prompt_tokens: int
    completion_tokens: int
    version: str


class Estimator(Protocol):
    version: str

    def estimate(self, model: str, lengths: Lengths) -> Estimate: ...


def utf8_bytes_from_profile(profile: dict[str, int]) -> int:
    """Bytes implied by a character-class profile: CJK is 3 bytes, `other` mostly 2, ASCII 1."""
    return (
        3 * profile.get("cjk", 0)
        + 2 * profile.get("other", 0)
        + sum(profile.get(k, 0) for k in ("letters", "digits", "spaces", "punct"))
    )


def _side_bytes(n_bytes: int | None, n_chars: int | None, profile: dict[str, int] | None) -> int | None:
    if n_bytes is not None:
        return n_bytes
    if profile is not None:
        return utf8_bytes_from_profile(profile)
    return n_chars


class FallbackEstimator:
    """UTF-8 bytes / 4 per side, plus per-message overhead: no training needed."""

    version = "fallback-bytes4-v1"

    def estimate(self, model: str, lengths: Lengths) -> Estimate:
        context = _side_bytes(lengths.context_bytes, lengths.context_chars, lengths.context_profile)
        output = _side_bytes(lengths.output_bytes, lengths.output_chars, lengths.output_profile)
        prompt = 0
        if context is not None:
            prompt = math.ceil(context / 4) + TOKENS_PER_MESSAGE * (lengths.message_count or 1) + TOKENS_PER_REPLY
        completion = math.ceil(output / 4) if output is not None else 0
        return Estimate(prompt_tokens=prompt, completion_tokens=completion, version=self.version)


def current_estimator() -> Estimator:
    return FallbackEstimator()
