"""Token estimates for records that arrive without usage (README "Calibrated token estimation"):
what an estimate is made of, the features the fits read, and the fallback estimator.

Every estimator answers the same small question (`estimate(model, lengths)`), so the
calibrated one replaces the fallback without touching ingestion.

The calibrated estimator is linear and non-negative, one fit per model (or per model
family, or for all models) and per kind of input:

- `profile`: tokens ≈ Σ wₖ·countₖ over the six character classes, plus w_m per message
  and a constant on the context side;
- `lengths`: tokens ≈ w_c·chars + w_b·bytes, plus the same message terms, for records
  that only logged lengths.

Both sides of a call (context → prompt tokens, output → completion tokens) share one
fit: the tokenizer is the same, and the message terms are zero on the output side.
Fitting (`usage.estimation.fitting`) is pure Python so that bench/estimation.py can use it without a
database; `usage.estimation.calibration` feeds it stored records and keeps the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

CLASSES = ("cjk", "letters", "digits", "spaces", "punct", "other")
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3

PROFILE, LENGTHS = "profile", "lengths"
MESSAGE_TERMS = ("messages", "context")
FEATURES: dict[str, tuple[str, ...]] = {
    PROFILE: (*CLASSES, *MESSAGE_TERMS),
    LENGTHS: ("chars", "bytes", *MESSAGE_TERMS),
}
ALL_MODELS = "*"


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


# --- Features ----------------------------------------------------------------------

Features = dict[str, float]


def side_features(
    kind: str,
    *,
    chars: int | None,
    n_bytes: int | None,
    profile: dict[str, int] | None,
    messages: int | None,
    context: bool,
) -> Features | None:
    """The features of one side of a call for a fit of `kind`, or None when that side
    logged nothing the kind can use."""
    if kind == PROFILE:
        if profile is None:
            return None
        features: Features = {name: float(profile.get(name, 0)) for name in CLASSES}
    else:
        if profile is not None:
            chars = sum(profile.get(name, 0) for name in CLASSES) if chars is None else chars
            n_bytes = utf8_bytes_from_profile(profile) if n_bytes is None else n_bytes
        if chars is None and n_bytes is None:
            return None
        # One of the two alone: the text is taken as ASCII, where they are equal.
        chars = n_bytes if chars is None else chars
        n_bytes = chars if n_bytes is None else n_bytes
        features = {"chars": float(chars or 0), "bytes": float(n_bytes or 0)}
    features["messages"] = float(messages or 1) if context else 0.0
    features["context"] = 1.0 if context else 0.0
    return features


def context_features(kind: str, lengths: Lengths) -> Features | None:
    return side_features(
        kind,
        chars=lengths.context_chars,
        n_bytes=lengths.context_bytes,
        profile=lengths.context_profile,
        messages=lengths.message_count,
        context=True,
    )


def output_features(kind: str, lengths: Lengths) -> Features | None:
    return side_features(
        kind,
        chars=lengths.output_chars,
        n_bytes=lengths.output_bytes,
        profile=lengths.output_profile,
        messages=None,
        context=False,
    )


def best_kind(profile: dict[str, int] | None) -> tuple[str, ...]:
    """Kinds of fit to try for a side, best first."""
    return (PROFILE, LENGTHS) if profile is not None else (LENGTHS,)
