"""Fitting the calibrated estimator: non-negative least squares over features, in pure
Python so that bench/estimation.py can use it without a database, and the errors a fit is
judged by."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from usage.estimation.features import FEATURES, Estimate, Features, Lengths, context_features, output_features


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
