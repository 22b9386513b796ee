"""When balances run out, and what plans will leave unused: the forecast.

Two halves, so the arithmetic is testable on plain series:

- **Reads** (`account_forecast`): daily token and cost consumption per model from the
  hourly rollups (aggregated in the database, complete days in DASHBOARD_TIME_ZONE),
  the plans not yet expired with what they have left (`selectors.plan_statuses`) and
  the wallet balance.
- **Pure computation** (`forecast_from_inputs`):
  1. *Burn model.* The daily total is divided by a weekday factor once there are
     `WEEKLY_MIN_DAYS` of history (a weekday pattern needs at least three of each
     weekday). The trend is a regression with weights halving every
     `LONG_HALF_LIFE_DAYS`, shrunk towards zero by 1 − 4/t² (dropped when it is within
     two standard errors of zero: noise is not extrapolated), and damped when projected,
     so it is followed for a few weeks and not forever. The level now is the mean of the
     detrended days weighted by a blend of `HALF_LIFE_DAYS` (follows recent changes) and
     `LONG_HALF_LIFE_DAYS` (is not thrown about by a few noisy days).
     Each model takes its recent (equally weighted) share of the total, with its own
     cost per token and its ratios of uncached and completion tokens.
  2. *Simulation.* From `now`, in steps cut at local midnights and at every plan's
     start and expiry, each model's projected tokens burn the plans that cover it in
     the allocation engine's order (priority, then sooner expiry, then earlier start);
     what no plan covers is charged to the wallet at the model's cost per token. This
     gives the token run-out (the moment the plans that cover the models in use have
     nothing left: used up or expired), the wallet run-out, and per plan the tokens
     left at its expiry.
  3. *Band.* The relative spread of the consumption over `h` days combines the noise of
     the days to come (`cv`, the weighted spread of the residuals, over √h), the
     uncertainty of the level (cv/√n_eff) and that of the trend (its standard error times
     the days it is followed). That spread is calibrated on the model's own errors: the
     model is refitted at earlier origins of the history and, per horizon (1, 3, 7, 14
     days), scaled so that 80% of its past errors fall inside ±z·spread. The simulation
     is run again with the consumption scaled by 1 ± that half-width; high consumption
     gives the earliest run-out and the fewest unused tokens.

Everything returned is in UTC; `None` means "does not run out within the horizon".
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from itertools import pairwise

from django.db.models import Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing import selectors
from billing.models import Allocation, BalanceSnapshot, PlanPurchase, TokenBasis, WalletEntry, models_match
from usage import selectors as usage_selectors
from usage.models import Account
from usage.periods import Period, dashboard_tz

HORIZON_DAYS = 365  # run-outs later than this are reported as None
MAX_SIMULATED_DAYS = 730  # plans expiring later are judged by what they have left then
LOOKBACK_DAYS = 56  # eight weeks of history: enough for a weekday pattern
HALF_LIFE_DAYS = 7.0
LONG_HALF_LIFE_DAYS = 28.0  # the level blends both half-lives; the trend uses the long one
MIX_DAYS = 14  # model shares come from the last two weeks
WEEKLY_MIN_DAYS = 21
TREND_MIN_DAYS = 10
DAMPING = 0.97  # per day: a trend adds at most ~32 days' worth of its slope
Z90 = 1.2815515655446004  # p90 of the standard normal
MAX_BAND = 0.95
CALIBRATION_MIN_DAYS = 14  # an origin needs two weeks of history before it
CALIBRATION_ORIGINS = 42  # the last six weeks of origins
CALIBRATION_HORIZONS = (1, 3, 7, 14)
CALIBRATION_MIN_ERRORS = 8  # per horizon
MIN_BAND_SCALE, MAX_BAND_SCALE = 0.75, 4.0
EPSILON = 1e-6
DAY = timedelta(days=1)


# --- Inputs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DayUsage:
    """One model's consumption on one complete day (in the dashboard's time zone)."""

    day: date
    model: str
    tokens: int  # prompt + completion
    uncached_tokens: int = -1  # prompt − cached + completion; -1: same as tokens
    completion_tokens: int = -1  # -1: same as tokens
    cost: Decimal = Decimal(0)


@dataclass(frozen=True)
class PlanState:
    """A purchase as the forecast sees it: what it has left now."""

    id: int
    tokens: int
    remaining: int
    effective_at: datetime
    expires_at: datetime
    models: tuple[str, ...] = ()
    priority: int = 0
    basis: str = TokenBasis.TOTAL
    name: str = ""

    @property
    def burn_order(self) -> tuple[int, datetime, datetime, int]:
        return (-self.priority, self.expires_at, self.effective_at, self.id)

    def covers(self, model: str) -> bool:
        return models_match(self.models, model)


@dataclass(frozen=True)
class ForecastInputs:
    now: datetime
    history: Sequence[DayUsage]
    plans: Sequence[PlanState]
    wallet_balance: Decimal
    tz: tzinfo = UTC
    horizon_days: int = HORIZON_DAYS


# --- Outputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunOut:
    """When a balance is projected to reach zero, with its p10–p90 range (earliest comes
    from high consumption). All None: it does not run out within the horizon."""

    at: datetime | None = None
    earliest: datetime | None = None
    latest: datetime | None = None


@dataclass(frozen=True)
class PlanForecast:
    purchase_id: int
    expires_at: datetime
    tokens_remaining: int
    projected_unused_tokens: int
    unused_low: int
    unused_high: int
    used_up_at: datetime | None  # projected, when it is used up before it expires


@dataclass(frozen=True)
class ProjectedPoint:
    """The balances projected at `at`, with their p10–p90 band."""

    at: datetime
    token_balance: int
    token_low: int
    token_high: int
    wallet_balance: Decimal
    wallet_low: Decimal
    wallet_high: Decimal


@dataclass(frozen=True)
class ModelMix:
    share: float  # of the daily tokens
    cost_per_token: float
    uncached_ratio: float
    completion_ratio: float

    def ratio(self, basis: str) -> float:
        if basis == TokenBasis.COMPLETION:
            return self.completion_ratio
        if basis == TokenBasis.UNCACHED:
            return self.uncached_ratio
        return 1.0


@dataclass(frozen=True)
class BurnModel:
    """Tokens per day as a function of the days from now and the weekday."""

    level: float = 0.0  # deseasonalised tokens/day now
    slope: float = 0.0  # change of the level per day
    weekday_factors: tuple[float, ...] = (1.0,) * 7
    cv: float = 0.0  # relative day-to-day variation
    n_eff: float = 1.0
    slope_var: float = 0.0  # variance of the slope, relative to the level squared
    band_scales: tuple[float, ...] = ()  # per CALIBRATION_HORIZONS: the band fitted to the model's past errors
    days_observed: int = 0
    mix: dict[str, ModelMix] = field(default_factory=dict)

    @property
    def weekly(self) -> bool:
        return any(abs(f - 1.0) > EPSILON for f in self.weekday_factors)

    def tokens_per_day(self, days_ahead: float, weekday: int) -> float:
        trend = DAMPING * (1 - DAMPING**days_ahead) / (1 - DAMPING) if days_ahead > 0 else 0.0
        return self.weekday_factors[weekday] * max(0.0, self.level + self.slope * trend)

    def spread(self, days: float) -> float:
        """The relative standard deviation of the consumption over `days`: the noise of
        the days to come, the uncertainty of the level now and that of the trend (which
        grows with the days the trend is followed)."""
        days = max(days, 1.0)
        trend_days = DAMPING * (1 - DAMPING ** (days / 2)) / (1 - DAMPING)
        return math.sqrt(self.cv**2 * (1 / days + 1 / max(self.n_eff, 1.0)) + self.slope_var * trend_days**2)

    def band(self, days: float) -> float:
        """Half-width of the p10–p90 range of the consumption over `days`, relative to it."""
        if self.cv <= 0 and self.slope_var <= 0:
            return 0.0
        return min(MAX_BAND, Z90 * self.band_scale(days) * self.spread(days))

    def band_scale(self, days: float) -> float:
        """The calibration factor at `days`, interpolated in log(days) between the calibrated horizons."""
        if not self.band_scales:
            return 1.0
        points = list(zip(CALIBRATION_HORIZONS, self.band_scales, strict=True))
        if days <= points[0][0]:
            return points[0][1]
        for (h0, s0), (h1, s1) in pairwise(points):
            if days <= h1:
                return s0 + (s1 - s0) * math.log(days / h0) / math.log(h1 / h0)
        return points[-1][1]


@dataclass(frozen=True)
class AccountForecast:
    now: datetime
    token_run_out: RunOut
    wallet_run_out: RunOut
    plans: dict[int, PlanForecast]
    token_balance: int  # usable now (plans in effect)
    wallet_balance: Decimal
    burn_rate_tokens_per_day: Decimal  # projected, next 7 days, of the models the plans cover
    token_demand_per_day: Decimal  # projected, next 7 days, every model
    wallet_burn_per_day: Decimal  # projected, next 7 days, charged to the wallet
    burn: BurnModel
    projection: list[ProjectedPoint]

    @property
    def has_usage(self) -> bool:
        return self.burn.days_observed > 0 and self.token_demand_per_day > 0

    @property
    def run_out(self) -> RunOut:
        """The sooner of the token and wallet run-outs (what "quota runs out" means)."""
        candidates = [r for r in (self.token_run_out, self.wallet_run_out) if r.at is not None]
        return min(candidates, key=lambda r: r.at) if candidates else RunOut()  # type: ignore[arg-type, return-value]  # every candidate has its `at` (filtered above)


# --- Fitting the burn model -------------------------------------------------------------


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


# --- Simulating forward ---------------------------------------------------------------------


@dataclass
class Simulation:
    token_run_out: datetime | None = None
    wallet_run_out: datetime | None = None
    unused: dict[int, float] = field(default_factory=dict)
    used_up_at: dict[int, datetime] = field(default_factory=dict)
    # (moment, token balance of plans in effect, tokens consumed so far, wallet, charged so far)
    points: list[tuple[datetime, float, float, float, float]] = field(default_factory=list)
    relevant_demand: list[tuple[float, float]] = field(default_factory=list)  # (days, tokens) of the first week
    all_demand: list[tuple[float, float]] = field(default_factory=list)
    wallet_charges: list[tuple[float, float]] = field(default_factory=list)


def _boundaries(inputs: ForecastInputs, end: datetime) -> list[datetime]:
    now = inputs.now
    cuts = {now, end}
    midnight = datetime.combine(now.astimezone(inputs.tz).date() + DAY, time(0), tzinfo=inputs.tz)
    while midnight < end:
        cuts.add(midnight.astimezone(UTC))
        midnight = datetime.combine(midnight.date() + DAY, time(0), tzinfo=inputs.tz)
    for plan in inputs.plans:
        for moment in (plan.effective_at, plan.expires_at):
            if now < moment < end:
                cuts.add(moment)
    return sorted(cuts)


def _relevant_plans(plans: Sequence[PlanState], models: Iterable[str], now: datetime) -> list[PlanState]:
    """Plans not expired, with tokens left, that cover at least one model in use."""
    models = list(models)
    return [p for p in plans if p.expires_at > now and p.remaining > 0 and any(p.covers(m) for m in models)]


def simulate(inputs: ForecastInputs, burn: BurnModel, factor: float = 1.0) -> Simulation:
    now = inputs.now
    plans = sorted((p for p in inputs.plans if p.expires_at > now), key=lambda p: p.burn_order)
    latest_expiry = max((p.expires_at for p in plans), default=now)
    horizon_end = now + timedelta(days=inputs.horizon_days)
    end = min(max(horizon_end, latest_expiry), now + timedelta(days=MAX_SIMULATED_DAYS))
    mix = burn.mix
    relevant = {p.id for p in _relevant_plans(plans, [m for m, x in mix.items() if x.share > 0], now)}
    covering = {model: [p for p in plans if p.covers(model)] for model in mix}
    left = {p.id: float(max(p.remaining, 0)) for p in plans}
    wallet = float(inputs.wallet_balance)
    sim = Simulation()
    consumed = charged = 0.0

    def in_effect(plan: PlanState, at: datetime) -> bool:
        return plan.effective_at <= at < plan.expires_at

    def balance(at: datetime, ids: set[int] | None = None) -> float:
        return sum(left[p.id] for p in plans if in_effect(p, at) and (ids is None or p.id in ids))

    sim.points.append((now, balance(now), 0.0, wallet, 0.0))
    cuts = _boundaries(inputs, end)
    for start, stop in pairwise(cuts):
        for plan in plans:  # expiries at this boundary: what is left is unused
            if plan.expires_at <= start and plan.id not in sim.unused:
                sim.unused[plan.id] = left[plan.id]
                left[plan.id] = 0.0
        length = (stop - start) / DAY
        middle = start + (stop - start) / 2
        demand = factor * burn.tokens_per_day((middle - now) / DAY, middle.astimezone(inputs.tz).weekday()) * length
        before = balance(start, relevant)
        if relevant and sim.token_run_out is None and before <= EPSILON and start < horizon_end:
            sim.token_run_out = start
        wanted = 0.0  # what the relevant plans were asked for, to time a run-out inside the step
        asked: dict[int, float] = defaultdict(float)
        left_before = dict(left)
        wallet_charge = 0.0
        relevant_tokens = 0.0
        for model, share in mix.items():
            tokens = demand * share.share
            uncovered = 1.0
            first = True
            for plan in covering[model]:
                if not in_effect(plan, start):
                    continue
                need = tokens * share.ratio(plan.basis) * uncovered
                if first and plan.id in relevant:
                    wanted += need
                    relevant_tokens += tokens
                first = False
                if need <= 0:
                    continue
                asked[plan.id] += need
                if left[plan.id] <= 0:
                    continue
                taken = min(left[plan.id], need)
                left[plan.id] -= taken
                consumed += taken
                uncovered *= 1 - taken / need
            wallet_charge += uncovered * tokens * share.cost_per_token
        for plan_id, need in asked.items():
            if left_before[plan_id] > EPSILON and left[plan_id] <= EPSILON and plan_id not in sim.used_up_at:
                sim.used_up_at[plan_id] = start + (stop - start) * min(1.0, left_before[plan_id] / need)
        after = balance(start, relevant)
        if relevant and sim.token_run_out is None and before > EPSILON and after <= EPSILON and start < horizon_end:
            sim.token_run_out = start + (stop - start) * min(1.0, before / wanted if wanted > 0 else 1.0)
        if wallet_charge > 0 and sim.wallet_run_out is None and start < horizon_end:
            if wallet <= 0:
                sim.wallet_run_out = start
            elif wallet - wallet_charge <= 0:
                sim.wallet_run_out = start + (stop - start) * (wallet / wallet_charge)
        wallet -= wallet_charge
        charged += wallet_charge
        days_in = (start - now) / DAY
        if days_in < 7:
            sim.relevant_demand.append((length, relevant_tokens))
            sim.all_demand.append((length, demand))
            sim.wallet_charges.append((length, wallet_charge))
        sim.points.append((stop, balance(stop), consumed, wallet, charged))
    for plan in plans:
        sim.unused.setdefault(plan.id, left[plan.id])
    for name in ("token_run_out", "wallet_run_out"):
        moment = getattr(sim, name)
        if moment is not None and moment > horizon_end:
            setattr(sim, name, None)
    return sim


def _per_day(pairs: list[tuple[float, float]], places: int = 0) -> Decimal:
    """The mean per day, to `places` decimals (tokens: whole; money: cents)."""
    days = sum(length for length, _ in pairs)
    if days <= 0:
        return Decimal(0)
    return Decimal(str(round(sum(v for _, v in pairs) / days, places))).quantize(Decimal(1).scaleb(-places))


# --- Putting it together ---------------------------------------------------------------------


def forecast_from_inputs(inputs: ForecastInputs) -> AccountForecast:
    now = inputs.now
    burn = fit_burn(inputs.history, now=now, tz=inputs.tz)
    runs: dict[float, Simulation] = {}

    def run(factor: float) -> Simulation:
        key = round(factor, 4)
        if key not in runs:
            runs[key] = simulate(inputs, burn, key)
        return runs[key]

    central = run(1.0)
    horizon = float(inputs.horizon_days)

    def run_out(moment: datetime | None, attribute: str) -> RunOut:
        days = (moment - now) / DAY if moment is not None else horizon
        k = burn.band(days)
        return RunOut(at=moment, earliest=getattr(run(1 + k), attribute), latest=getattr(run(1 - k), attribute))

    plans: dict[int, PlanForecast] = {}
    for plan in inputs.plans:
        if plan.expires_at <= now:
            continue
        k = burn.band((plan.expires_at - now) / DAY)
        plans[plan.id] = PlanForecast(
            purchase_id=plan.id,
            expires_at=plan.expires_at,
            tokens_remaining=plan.remaining,
            projected_unused_tokens=round(central.unused.get(plan.id, plan.remaining)),
            unused_low=round(run(1 + k).unused.get(plan.id, plan.remaining)),
            unused_high=round(run(1 - k).unused.get(plan.id, plan.remaining)),
            used_up_at=central.used_up_at.get(plan.id),
        )
    return AccountForecast(
        now=now,
        token_run_out=run_out(central.token_run_out, "token_run_out"),
        wallet_run_out=run_out(central.wallet_run_out, "wallet_run_out"),
        plans=plans,
        token_balance=sum(p.remaining for p in inputs.plans if p.effective_at <= now < p.expires_at),
        wallet_balance=inputs.wallet_balance,
        burn_rate_tokens_per_day=_per_day(central.relevant_demand),
        token_demand_per_day=_per_day(central.all_demand),
        wallet_burn_per_day=_per_day(central.wallet_charges, places=2),
        burn=burn,
        projection=_projection(central, burn, now, inputs.wallet_balance),
    )


def _projection(sim: Simulation, burn: BurnModel, now: datetime, wallet_now: Decimal) -> list[ProjectedPoint]:
    """Daily points of the projected balances; the band scales what is consumed (expiries are certain)."""
    points: list[ProjectedPoint] = []
    last_day: date | None = None
    for index, (at, tokens, consumed, wallet, charged) in enumerate(sim.points):
        final = index == len(sim.points) - 1
        if not final and index and at.date() == last_day:
            continue
        last_day = at.date()
        k = burn.band((at - now) / DAY)
        points.append(
            ProjectedPoint(
                at=at,
                token_balance=round(tokens),
                token_low=round(max(0.0, tokens - consumed * k)),
                token_high=round(tokens + consumed * k),
                wallet_balance=Decimal(round(wallet, 2)).quantize(Decimal("0.01")),
                wallet_low=Decimal(round(wallet - charged * k, 2)).quantize(Decimal("0.01")),
                wallet_high=Decimal(round(wallet + charged * k, 2)).quantize(Decimal("0.01")),
            )
        )
        if sim.points and at - now > timedelta(days=HORIZON_DAYS):
            break
    return points


# --- Reading the database ------------------------------------------------------------------------


def read_history(account: Account, *, now: datetime) -> list[DayUsage]:
    """Complete days (of the dashboard's time zone) of consumption per model, from the rollup."""
    today = now.astimezone(dashboard_tz()).date()
    days = Period("custom", today - timedelta(days=LOOKBACK_DAYS), today - timedelta(days=1))
    rows = (
        usage_selectors.rollup_rows(account, days)
        .values("day", "model")
        .annotate(
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cached=Sum("cached_tokens"),
            spend=Sum("cost"),
        )
        .order_by("day", "model")
    )
    return [
        DayUsage(
            day=r["day"],
            model=r["model"],
            tokens=(r["prompt"] or 0) + (r["completion"] or 0),
            uncached_tokens=max((r["prompt"] or 0) - (r["cached"] or 0), 0) + (r["completion"] or 0),
            completion_tokens=r["completion"] or 0,
            cost=r["spend"] or Decimal(0),
        )
        for r in rows
    ]


def read_inputs(
    account: Account,
    *,
    now: datetime | None = None,
    statuses: Sequence[selectors.PlanStatus] | None = None,
    wallet: Decimal | None = None,
) -> ForecastInputs:
    """The forecast's inputs at `now`; `statuses` and `wallet`, when the caller has read them
    for the same moment, are used as they are (so both show the same plans and wallet)."""
    now = now or timezone.now()
    tz = dashboard_tz()
    if statuses is None:
        statuses = selectors.plan_statuses(account, now=now)
    plans = [
        PlanState(
            id=s.purchase.pk,
            tokens=s.purchase.tokens,
            remaining=s.tokens_remaining,
            effective_at=s.purchase.effective_at,
            expires_at=s.purchase.expires_at,
            models=tuple(s.purchase.allowed_models or ()),
            priority=s.purchase.priority,
            basis=s.purchase.token_basis,
            name=s.purchase.name,
        )
        for s in statuses
    ]
    return ForecastInputs(
        now=now,
        history=read_history(account, now=now),
        plans=plans,
        wallet_balance=selectors.wallet_balance(account, at=now) if wallet is None else wallet,
        tz=tz,
    )


def account_forecast(account: Account, *, now: datetime | None = None) -> AccountForecast:
    """The forecast of one account at `now` (see the module docstring), computed afresh.
    Pages, the API and alerts read it through `billing.balances.account_balances`, which
    computes it once per moment for all of them."""
    return forecast_from_inputs(read_inputs(account, now=now))


# --- Balance history (for the chart) ---------------------------------------------------------


@dataclass(frozen=True)
class BalancePoint:
    at: datetime
    token_balance: int
    wallet_balance: Decimal


@dataclass(frozen=True)
class ReportedPoint:
    at: datetime
    balance: Decimal
    currency: str


def balance_history(account: Account, *, now: datetime | None = None, days: int = 30) -> list[BalancePoint]:
    """The token balance (plans in effect) and the wallet at the end of each of the last
    `days` days, and now; from daily sums of allocations and ledger lines (in the database)."""
    now = now or timezone.now()
    tz = dashboard_tz()
    today = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    start = today - timedelta(days=days - 1)
    opening = WalletEntry.objects.filter(account=account, occurred_at__lt=start).aggregate(t=Sum("amount"))["t"]
    daily_wallet = dict(
        WalletEntry.objects.filter(account=account, occurred_at__gte=start, occurred_at__lte=now)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("day")
        .annotate(t=Sum("amount"))
        .values_list("day", "t")
    )
    purchases = list(
        PlanPurchase.objects.filter(
            account=account, voided_at__isnull=True, expires_at__gt=start, effective_at__lte=now
        )
    )
    used_before = dict(
        Allocation.objects.filter(purchase__in=purchases, occurred_at__lt=start)
        .values("purchase")
        .annotate(t=Sum("tokens"))
        .values_list("purchase", "t")
    )
    daily_used: dict[date, dict[int, int]] = defaultdict(dict)
    for purchase_id, day, tokens in (
        Allocation.objects.filter(purchase__in=purchases, occurred_at__gte=start, occurred_at__lte=now)
        .annotate(day=TruncDate("occurred_at", tzinfo=tz))
        .values("purchase", "day")
        .annotate(t=Sum("tokens"))
        .values_list("purchase", "day", "t")
    ):
        daily_used[day][purchase_id] = tokens
    wallet = opening or Decimal(0)
    used = {p.pk: used_before.get(p.pk, 0) for p in purchases}
    points = []
    for index in range(days):  # the end of each day; today's is now
        day = start.date() + timedelta(days=index)
        at = min(datetime.combine(day + DAY, time(0), tzinfo=tz), now)
        wallet += daily_wallet.get(day, Decimal(0))
        for purchase_id, tokens in daily_used.get(day, {}).items():
            used[purchase_id] += tokens
        tokens_left = sum(p.tokens - used[p.pk] for p in purchases if p.effective_at <= at < p.expires_at)
        points.append(BalancePoint(at=at, token_balance=max(tokens_left, 0), wallet_balance=wallet))
    return points


def reported_balances(account: Account, *, now: datetime | None = None, days: int = 30) -> list[ReportedPoint]:
    now = now or timezone.now()
    rows = BalanceSnapshot.objects.filter(
        account=account, balance__isnull=False, taken_at__gte=now - timedelta(days=days), taken_at__lte=now
    ).order_by("taken_at")
    return [ReportedPoint(r.taken_at, r.balance, r.currency) for r in rows if r.balance is not None]
