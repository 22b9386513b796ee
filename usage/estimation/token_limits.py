"""The most tokens an estimate may say one call used.

An estimate is read off logged lengths, and a client that logs a 10 MB context would
otherwise be charged 2.5 million tokens for one call. Two bounds hold for any call:

- no side can have more tokens than UTF-8 bytes (a token is at least one byte), plus the
  per-message overhead on the context side;
- no side can exceed the model's context window: the one genai-prices lists for the model,
  else DEFAULT_CONTEXT_WINDOW.

An estimate over either is cut to it, and its `estimator_version` ends in `+capped`, so the
record says its tokens are a bound, not a measurement.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from genai_prices import data_snapshot

from usage.estimation.features import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY, Estimate, Lengths, utf8_bytes_from_profile

DEFAULT_CONTEXT_WINDOW = 1_000_000  # a model genai-prices does not know; the largest common windows are 1–2 M
CAPPED = "+capped"


@lru_cache(maxsize=4096)
def context_window(model: str) -> int:
    """The model's context window in tokens, as genai-prices lists it, else the default."""
    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return DEFAULT_CONTEXT_WINDOW
    return info.context_window or DEFAULT_CONTEXT_WINDOW


def _bytes(n_bytes: int | None, n_chars: int | None, profile: dict[str, int] | None) -> int | None:
    """UTF-8 bytes of a side: logged, or the most its characters can take (4 bytes each)."""
    if n_bytes is not None:
        return n_bytes
    if profile is not None:
        return utf8_bytes_from_profile(profile)
    return 4 * n_chars if n_chars is not None else None


def capped(model: str, lengths: Lengths, estimate: Estimate) -> Estimate:
    """`estimate`, with each side cut to what the lengths and the model allow."""
    window = context_window(model)
    context_bytes = _bytes(lengths.context_bytes, lengths.context_chars, lengths.context_profile)
    output_bytes = _bytes(lengths.output_bytes, lengths.output_chars, lengths.output_profile)
    prompt_limit = window
    if context_bytes is not None:
        overhead = TOKENS_PER_MESSAGE * (lengths.message_count or 1) + TOKENS_PER_REPLY
        prompt_limit = min(window, context_bytes + overhead)
    completion_limit = min(window, output_bytes) if output_bytes is not None else window
    prompt = min(estimate.prompt_tokens, prompt_limit)
    completion = min(estimate.completion_tokens, completion_limit)
    if (prompt, completion) == (estimate.prompt_tokens, estimate.completion_tokens):
        return estimate
    return replace(estimate, prompt_tokens=prompt, completion_tokens=completion, version=estimate.version + CAPPED)
