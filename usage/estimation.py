"""Token estimates for records that arrive without usage (README "Calibrated token estimation").

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
Fitting is pure Python (`fit`, `nnls`) so that bench/estimation.py can use it without a
database; `usage.calibration` feeds it stored records and keeps the results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
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


# --- Fitting -------------------------------------------------------------------------


def _solve(matrix: list[list[float]], rhs: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting on a small dense system."""
    n = len(rhs)
    a = [row[:] + [rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        if abs(a[col][col]) < 1e-300:
            continue  # a singular direction: its unknown stays 0
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            if factor:
                for c in range(col, n + 1):
                    a[r][c] -= factor * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        if abs(a[r][r]) < 1e-300:
            continue
        x[r] = (a[r][n] - sum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


def nnls(gram: Sequence[Sequence[float]], rhs: Sequence[float], *, tolerance: float = 1e-10) -> list[float]:
    """argmin ‖Ax − y‖² subject to x ≥ 0, given AᵀA and Aᵀy (Lawson–Hanson active set).

    Working on the normal equations keeps a fit over any number of records to one pass
    over them plus a few solves of a system as small as the feature count.
    """
    n = len(rhs)
    x = [0.0] * n
    passive: list[int] = []

    def gradient(point: list[float]) -> list[float]:
        return [rhs[i] - sum(gram[i][j] * point[j] for j in range(n)) for i in range(n)]

    def solve_passive() -> list[float]:
        sub = [[gram[i][j] for j in passive] for i in passive]
        values = _solve(sub, [rhs[i] for i in passive])
        z = [0.0] * n
        for index, value in zip(passive, values, strict=True):
            z[index] = value
        return z

    for _ in range(3 * n + 10):
        grad = gradient(x)
        candidates = [j for j in range(n) if j not in passive and grad[j] > tolerance]
        if not candidates:
            break
        passive.append(max(candidates, key=lambda j: grad[j]))
        while True:
            z = solve_passive()
            if all(z[j] > tolerance for j in passive):
                x = z
                break
            # Step towards z until a passive coefficient reaches zero, then drop it.
            alpha = min(x[j] / (x[j] - z[j]) for j in passive if z[j] <= tolerance)
            x = [x[i] + alpha * (z[i] - x[i]) for i in range(n)]
            passive = [j for j in passive if x[j] > tolerance]
            for j in range(n):
                if j not in passive:
                    x[j] = 0.0
            if not passive:
                break
    return x


@dataclass(frozen=True, slots=True)
class Sample:
    """One call with reported usage: what was logged, and the true token counts.

    `completion_tokens` is None when the output side must not be trained on (hidden
    reasoning tokens, say, which no logged length accounts for).
    """

    lengths: Lengths
    prompt_tokens: int
    completion_tokens: int | None


Row = tuple[Features, float]


def training_rows(kind: str, samples: Iterable[Sample]) -> list[Row]:
    """(features, true tokens) per usable side of each sample."""
    rows: list[Row] = []
    for sample in samples:
        context = context_features(kind, sample.lengths)
        if context is not None and sample.prompt_tokens > 0:
            rows.append((context, float(sample.prompt_tokens)))
        output = output_features(kind, sample.lengths)
        if output is not None and sample.completion_tokens:
            rows.append((output, float(sample.completion_tokens)))
    return rows


def fit(kind: str, rows: Sequence[Row], *, weight_power: float = 2.0) -> dict[str, float]:
    """Non-negative weights minimising Σ ((ŷ − y) / y^(p/2))².

    With p = 2 each row counts by its relative error, which is what the estimate is
    judged on; long and short requests then weigh alike.
    """
    names = FEATURES[kind]
    n = len(names)
    gram = [[0.0] * n for _ in range(n)]
    rhs = [0.0] * n
    for features, target in rows:
        weight = 1.0 / max(target, 1.0) ** weight_power
        vector = [features.get(name, 0.0) for name in names]
        for i in range(n):
            vi = vector[i] * weight
            if vi:
                rhs[i] += vi * target
                row = gram[i]
                for j in range(n):
                    row[j] += vi * vector[j]
    # Scale columns to a unit diagonal so the solver works on comparable numbers.
    scale = [math.sqrt(gram[i][i]) or 1.0 for i in range(n)]
    scaled_gram = [[gram[i][j] / (scale[i] * scale[j]) for j in range(n)] for i in range(n)]
    scaled_rhs = [rhs[i] / scale[i] for i in range(n)]
    solution = nnls(scaled_gram, scaled_rhs)
    return {name: solution[i] / scale[i] for i, name in enumerate(names)}


def predict(weights: Mapping[str, float], features: Features) -> float:
    return sum(weights.get(name, 0.0) * value for name, value in features.items())


def relative_errors(estimate: Callable[[Lengths], Estimate], samples: Iterable[Sample]) -> list[float]:
    """|estimated − true| / true of the total tokens of each sample."""
    errors = []
    for sample in samples:
        truth = sample.prompt_tokens + (sample.completion_tokens or 0)
        if truth <= 0:
            continue
        result = estimate(sample.lengths)
        completion = result.completion_tokens if sample.completion_tokens is not None else 0
        errors.append(abs(result.prompt_tokens + completion - truth) / truth)
    return errors


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation (q = 0.5 is the median)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- The calibrated estimator ------------------------------------------------------------

_FAMILY = re.compile(r"[a-z]+")


def family(model: str) -> str:
    """The family a model falls back to: the leading letters of its name, after any
    `vendor/` prefix (gpt-4o-mini → gpt, qwen2.5-72b → qwen, deepseek-chat → deepseek)."""
    base = model.lower().rsplit("/", 1)[-1]
    found = _FAMILY.match(base)
    return found.group(0) if found else base


def family_scope(model: str) -> str:
    return f"family:{family(model)}"


def scopes_for(model: str) -> tuple[str, ...]:
    """Fits to look for, most specific first."""
    return (model, family_scope(model), ALL_MODELS)


@dataclass(frozen=True, slots=True)
class Fit:
    """Weights of one fit, as stored in usage.models.EstimatorFit."""

    id: int
    scope: str
    kind: str
    weights: dict[str, float]

    @property
    def version(self) -> str:
        return f"calibrated-{self.id}"


class CalibratedEstimator:
    """Uses the most specific fit there is for each side of a call; sides without one
    (nothing calibrated yet, or nothing logged the fits can use) get the fallback."""

    version = "calibrated"

    def __init__(self, fits: Mapping[tuple[str, str], Fit] | Callable[[], Mapping[tuple[str, str], Fit]]) -> None:
        self._fits = fits if not callable(fits) else None
        self._load = fits if callable(fits) else None
        self._fallback = FallbackEstimator()

    @property
    def fits(self) -> Mapping[tuple[str, str], Fit]:
        if self._fits is None:
            assert self._load is not None
            self._fits = self._load()  # lazily: most batches carry usage and never ask
        return self._fits

    def fit_for(self, model: str, kind: str) -> Fit | None:
        fits = self.fits
        for scope in scopes_for(model):
            found = fits.get((scope, kind))
            if found is not None:
                return found
        return None

    def _side(self, model: str, lengths: Lengths, *, context: bool) -> tuple[int, str] | None:
        profile = lengths.context_profile if context else lengths.output_profile
        for kind in best_kind(profile):
            features = context_features(kind, lengths) if context else output_features(kind, lengths)
            if features is None:
                continue
            found = self.fit_for(model, kind)
            if found is not None:
                return max(round(predict(found.weights, features)), 0), str(found.id)
        return None

    def estimate(self, model: str, lengths: Lengths) -> Estimate:
        """The estimate, never more than one call can hold (usage.token_limits)."""
        from usage.token_limits import capped  # it reads this module's definitions

        return capped(model, lengths, self._estimate(model, lengths))

    def _estimate(self, model: str, lengths: Lengths) -> Estimate:
        if not self.fits:
            return self._fallback.estimate(model, lengths)
        prompt_side = self._side(model, lengths, context=True)
        output_side = self._side(model, lengths, context=False)
        if prompt_side is None and output_side is None:
            return self._fallback.estimate(model, lengths)
        fallback = self._fallback.estimate(model, lengths)
        prompt, prompt_id = prompt_side if prompt_side else (fallback.prompt_tokens, "fb")
        completion, output_id = output_side if output_side else (fallback.completion_tokens, "fb")
        has_context = lengths.context_profile is not None or lengths.context_chars or lengths.context_bytes
        has_output = lengths.output_profile is not None or lengths.output_chars or lengths.output_bytes
        ids = [i for i, logged in ((prompt_id, has_context), (output_id, has_output)) if logged] or [prompt_id]
        version = "calibrated-" + (ids[0] if len(set(ids)) == 1 else "/".join(ids))
        return Estimate(prompt_tokens=prompt, completion_tokens=completion, version=version)


def current_estimator() -> Estimator:
    """The estimator ingestion uses now: the active fits, loaded on first use."""
    from usage.calibration import active_fits  # calibration reads models, which ingestion imports

    return CalibratedEstimator(active_fits)
