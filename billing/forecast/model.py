"""The forecast's vocabulary: its constants, what it reads (inputs) and what it answers (outputs)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from decimal import Decimal
from itertools import pairwise

from billing.models import TokenBasis, models_match

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
    from high consumption). All None: it does not run out within the horizon. `already`: the
    balance is at or below zero now (every moment is then the forecast's `now`); surfaces
    say "already run out", since a date would read as money still left until then."""

    at: datetime | None = None
    earliest: datetime | None = None
    latest: datetime | None = None
    already: bool = False


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
