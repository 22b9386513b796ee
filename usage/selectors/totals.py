"""Totals of a period from the rollups (aggregated in the database): per model, key, team or day,
the top rows, what is unpriced, and the summary every money figure is built on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from usage.models import Account, DailyUsage, HourlyUsage
from usage.periods import Period

ZERO = Decimal(0)


@dataclass(frozen=True)
class Totals:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    estimated_requests: int = 0
    estimated_tokens: int = 0
    unpriced_requests: int = 0
    cost: Decimal = ZERO

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def estimated_share(self) -> float:
        return self.estimated_tokens / self.tokens if self.tokens else 0.0

    @property
    def unpriced(self) -> bool:
        """No usage value at all: requests without a price and none with one (cost unknown, not 0)."""
        return self.unpriced_requests > 0 and not self.cost


TOTAL_FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "estimated_requests",
    "estimated_tokens",
    "unpriced_requests",
)


def rollup_sums() -> dict[str, Coalesce]:
    sums: dict[str, Coalesce] = {name: Coalesce(Sum(name), 0) for name in TOTAL_FIELDS}
    sums["cost"] = Coalesce(Sum("cost"), ZERO)
    return sums


def rollup_rows(account: Account, period: Period) -> QuerySet[Any]:
    """The rollup rows of the period, each with its `day` in the dashboard's time zone.

    Periods are whole days, so the daily rollup answers them; while its days belong to
    another time zone (DASHBOARD_TIME_ZONE changed, rebuild_rollups not run yet) the
    hourly rollup does, more slowly but right. (Typed QuerySet[Any]: DailyUsage rows, or
    HourlyUsage rows annotated with `day`, which a type checker cannot see.)
    """
    if account.daily_rollup_zone == settings.DASHBOARD_TIME_ZONE:
        return DailyUsage.objects.filter(account=account, day__gte=period.first_day, day__lte=period.last_day)
    return HourlyUsage.objects.filter(account=account, hour__gte=period.start, hour__lt=period.end).annotate(
        day=TruncDate("hour", tzinfo=period.tz)
    )


def totals(*, account: Account, period: Period) -> Totals:
    return Totals(**rollup_rows(account, period).aggregate(**rollup_sums()))


@dataclass(frozen=True)
class ModelDay:
    day: date
    model: str
    cost: Decimal
    tokens: int
    unpriced_requests: int = 0  # requests without a price: not in `cost`


def spend_by_model_per_day(*, account: Account, period: Period) -> list[ModelDay]:
    """Daily spend per model in the dashboard's time zone."""
    rows = (
        rollup_rows(account, period)
        .values("day", "model")
        .annotate(
            cost=Coalesce(Sum("cost"), ZERO),
            tokens=Sum(F("prompt_tokens") + F("completion_tokens")),
            unpriced_requests=Sum("unpriced_requests"),
        )
        .order_by("day", "model")
    )
    return [ModelDay(**row) for row in rows]


@dataclass(frozen=True)
class GroupTotals:
    key: str
    totals: Totals


def top_by(*, account: Account, period: Period, dimension: str, limit: int = 5) -> list[GroupTotals]:
    """The groups (model, api_key__name or team) with the highest spend, then tokens."""
    rows = (
        rollup_rows(account, period)
        .values(dimension)
        .annotate(**rollup_sums())
        .order_by("-cost", "-prompt_tokens", dimension)[:limit]
    )
    return [GroupTotals(key=row.pop(dimension) or "—", totals=Totals(**row)) for row in rows]


def unpriced_models(*, account: Account, period: Period) -> list[str]:
    return list(
        rollup_rows(account, period)
        .filter(unpriced_requests__gt=0)
        .values_list("model", flat=True)
        .distinct()
        .order_by("model")
    )


SUMMARY_DIMENSIONS = {"model": "model", "api_key": "api_key__name", "team": "team", "day": "day"}


@dataclass(frozen=True)
class SummaryRow:
    key: str
    totals: Totals


def only_q(only: Mapping[str, str] | None) -> Q:
    """The rows of one model, key name and/or team (`only`: dimension → value, as the summary
    writes keys: "" for no key or no team), for the rollups and the paid rollup alike."""
    condition = Q()
    for dimension, value in (only or {}).items():
        if dimension not in ("model", "api_key__name", "team"):
            raise ValueError(f"cannot restrict to {dimension!r}")
        if dimension == "api_key__name" and not value:
            condition &= Q(api_key__isnull=True)
        else:
            condition &= Q(**{dimension: value})
    return condition


def summary(
    *, account: Account, period: Period, group_by: str, only: Mapping[str, str] | None = None
) -> tuple[list[SummaryRow], Totals]:
    """Totals per model, key, team or day (in the dashboard's time zone) and overall; with
    `only`, of the rows of one model, key and/or team (see `only_q`)."""
    dimension = SUMMARY_DIMENSIONS[group_by]
    rows = rollup_rows(account, period).filter(only_q(only))
    grouped = rows.values(dimension).annotate(**rollup_sums()).order_by(dimension)
    result = []
    for row in grouped:
        key = row.pop(dimension)
        result.append(SummaryRow(key=key.isoformat() if group_by == "day" else (key or ""), totals=Totals(**row)))
    return result, Totals(**rows.aggregate(**rollup_sums()))
