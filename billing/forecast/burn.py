"""Fitting the burn model: level, trend, weekday pattern and model mix from daily history, and
the band calibrated on the model's own past errors."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from billing.forecast.model import (
    CALIBRATION_HORIZONS,
    CALIBRATION_MIN_DAYS,
    CALIBRATION_MIN_ERRORS,
    CALIBRATION_ORIGINS,
    DAY,
    HALF_LIFE_DAYS,
    LONG_HALF_LIFE_DAYS,
    LOOKBACK_DAYS,
    MAX_BAND_SCALE,
    MIN_BAND_SCALE,
    MIX_DAYS,
    TREND_MIN_DAYS,
    WEEKLY_MIN_DAYS,
    Z90,
    BurnModel,
    DayUsage,
    ModelMix,
)


def _noon(day: date, tz: tzinfo) -> datetime:
    return datetime.combine(day, time(12), tzinfo=tz)


def _totals_by_day(history: Iterable[DayUsage], last_day: date) -> dict[date, float]:
    totals: dict[date, float] = defaultdict(float)
    for row in history:
        if row.day <= last_day:
            totals[row.day] += row.tokens
    return totals


def fit_burn(history: Sequence[DayUsage], *, now: datetime, tz: tzinfo = UTC) -> BurnModel:
    """The burn model of complete days before today (in `tz`); days after the first
    day with usage that have no rows count as zero. Its band is calibrated on the
    model's own errors at earlier origins of the same history (see `_calibrate`)."""
    last_day = now.astimezone(tz).date() - DAY
    totals = _totals_by_day(history, last_day)
    used = [d for d, v in totals.items() if v > 0]
    if not used:
        return BurnModel()
    first = max(min(used), last_day - timedelta(days=LOOKBACK_DAYS - 1))
    days = [first + timedelta(days=i) for i in range((last_day - first).days + 1)]
    values = [totals.get(d, 0.0) for d in days]
    burn = _fit(days, values, now, tz)
    return replace(burn, band_scales=_calibrate(days, values, tz), mix=_model_mix(history, last_day))


def _weights(ages: Sequence[float]) -> list[float]:
    """Half recent (half-life `HALF_LIFE_DAYS`), half long (`LONG_HALF_LIFE_DAYS`): the level
    follows recent days without being thrown about by a few noisy ones."""
    short = [0.5 ** (-x / HALF_LIFE_DAYS) for x in ages]
    long = [0.5 ** (-x / LONG_HALF_LIFE_DAYS) for x in ages]
    s_short, s_long = sum(short), sum(long)
    return [a / s_short + b / s_long for a, b in zip(short, long, strict=True)]


def _fit(days: list[date], values: list[float], now: datetime, tz: tzinfo) -> BurnModel:
    """Level, damped trend and weekday factors of a complete, gap-free daily series ending before `now`."""
    ages = [(_noon(d, tz) - now) / DAY for d in days]  # negative: days before now
    factors = weekday_factors(days, values) if len(days) >= WEEKLY_MIN_DAYS else [1.0] * 7
    # Deseasonalised points; a weekday with no usage at all says nothing about the level.
    points = [(x, v / f) for x, v, d in zip(ages, values, days, strict=True) if (f := factors[d.weekday()])]
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    slope, slope_var = _trend(xs, ys) if len(days) >= TREND_MIN_DAYS else (0.0, 0.0)
    weights = _weights(xs)
    sw = sum(weights)
    level = sum(w * (y - slope * x) for x, y, w in zip(xs, ys, weights, strict=True)) / sw  # at x = 0, now
    if level < 0:  # a steep fall: do not project negative consumption
        level, slope, slope_var = max(sum(w * y for y, w in zip(ys, weights, strict=True)) / sw, 0.0), 0.0, 0.0

    all_weights = _weights(ages)
    fitted = [factors[d.weekday()] * max(0.0, level + slope * x) for d, x in zip(days, ages, strict=True)]
    sw_all = sum(all_weights)
    spread = math.sqrt(sum(w * (v - f) ** 2 for v, f, w in zip(values, fitted, all_weights, strict=True)) / sw_all)
    weighted_mean = sum(w * v for v, w in zip(values, all_weights, strict=True)) / sw_all
    cv = spread / weighted_mean if weighted_mean > 0 else 0.0
    n_eff = sw_all**2 / sum(w * w for w in all_weights)
    return BurnModel(
        level=level,
        slope=slope,
        weekday_factors=tuple(factors),
        cv=cv,
        n_eff=n_eff,
        slope_var=slope_var / level**2 if level > 0 else 0.0,
        days_observed=len(days),
    )


def _trend(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """The slope of a regression weighted with the long half-life, shrunk towards zero by
    how little it stands out from the noise (factor 1 − 4/t², none at |t| ≤ 2), and the
    variance of the estimate."""
    weights = [0.5 ** (-x / LONG_HALF_LIFE_DAYS) for x in xs]
    sw = sum(weights)
    mean_x = sum(w * x for x, w in zip(xs, weights, strict=True)) / sw
    mean_y = sum(w * y for y, w in zip(ys, weights, strict=True)) / sw
    sxx = sum(w * (x - mean_x) ** 2 for x, w in zip(xs, weights, strict=True))
    if sxx <= 0:
        return 0.0, 0.0
    slope = sum(w * (x - mean_x) * (y - mean_y) for x, y, w in zip(xs, ys, weights, strict=True)) / sxx
    intercept = mean_y - slope * mean_x
    residual = [y - intercept - slope * x for x, y in zip(xs, ys, strict=True)]
    n_eff = sw**2 / sum(w * w for w in weights)
    variance = sum(w * r * r for r, w in zip(residual, weights, strict=True)) / sw * n_eff / max(n_eff - 2, 1.0)
    slope_var = variance * sum((w * (x - mean_x)) ** 2 for x, w in zip(xs, weights, strict=True)) / sxx**2
    if slope_var <= 0:
        return slope, 0.0
    t2 = slope * slope / slope_var
    return slope * max(0.0, 1 - 4 / t2) if t2 > 0 else 0.0, slope_var


def _calibrate(days: list[date], values: list[float], tz: tzinfo) -> tuple[float, ...]:
    """How much wider (or narrower) the band must be to cover the model's own errors: the
    model is refitted at earlier origins of the history and its relative error over the
    next 1, 3, 7 and 14 days is compared with the spread it claimed. Per horizon, the
    factor that puts 80% of those errors inside the band; the previous horizon's (or 1)
    when there are too few origins to tell."""
    ratios: dict[int, list[float]] = {h: [] for h in CALIBRATION_HORIZONS}
    for origin in range(max(CALIBRATION_MIN_DAYS, len(days) - CALIBRATION_ORIGINS), len(days)):
        start = next((i for i in range(origin) if values[i] > 0), None)
        if start is None or origin - start < CALIBRATION_MIN_DAYS:
            continue
        at = datetime.combine(days[origin], time(0), tzinfo=tz)
        burn = _fit(days[start:origin], values[start:origin], at, tz)
        for h in CALIBRATION_HORIZONS:
            if origin + h > len(days):
                break
            predicted = sum(burn.tokens_per_day(j + 0.5, days[origin + j].weekday()) for j in range(h))
            spread = burn.spread(h)
            if predicted > 0 and spread > 0:
                ratios[h].append(abs(sum(values[origin : origin + h]) / predicted - 1) / spread)
    scales: list[float] = []
    for h in CALIBRATION_HORIZONS:
        errors = sorted(ratios[h])
        if len(errors) < CALIBRATION_MIN_ERRORS:
            scales.append(scales[-1] if scales else 1.0)
            continue
        covered = errors[math.ceil(0.8 * len(errors)) - 1]  # 80% of the errors are within
        scales.append(min(MAX_BAND_SCALE, max(MIN_BAND_SCALE, covered / Z90)))
    return tuple(scales)


def weekday_factors(days: list[date], values: list[float]) -> list[float]:
    """Each weekday's typical ratio to the centred 7-day moving average (so a trend is not
    mistaken for a weekday effect), normalised to average 1."""
    ratios: dict[int, list[float]] = defaultdict(list)
    for i in range(3, len(values) - 3):
        window = sum(values[i - 3 : i + 4]) / 7
        if window > 0:
            ratios[days[i].weekday()].append(values[i] / window)
    if len(ratios) < 7:
        return [1.0] * 7
    raw = [sum(ratios[w]) / len(ratios[w]) for w in range(7)]
    mean = sum(raw) / 7
    return [r / mean for r in raw] if mean > 0 else [1.0] * 7


def _model_mix(history: Iterable[DayUsage], last_day: date) -> dict[str, ModelMix]:
    since = last_day - timedelta(days=MIX_DAYS - 1)
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for row in history:
        if since <= row.day <= last_day and row.tokens > 0:
            acc = sums[row.model]
            acc[0] += row.tokens
            acc[1] += row.tokens if row.uncached_tokens < 0 else row.uncached_tokens
            acc[2] += row.tokens if row.completion_tokens < 0 else row.completion_tokens
            acc[3] += float(row.cost or 0)
    total = sum(acc[0] for acc in sums.values())
    if total <= 0:
        return {}
    return {
        model: ModelMix(share=t / total, cost_per_token=c / t, uncached_ratio=u / t, completion_ratio=o / t)
        for model, (t, u, o, c) in sorted(sums.items())
    }
