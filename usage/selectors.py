"""Reads for the usage pages and API. Totals come from HourlyUsage, aggregated in the database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate

from usage.models import Account, HourlyUsage
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


def _sums() -> dict[str, Coalesce]:
    sums: dict[str, Coalesce] = {name: Coalesce(Sum(name), 0) for name in TOTAL_FIELDS}
    sums["cost"] = Coalesce(Sum("cost"), ZERO)
    return sums


def hourly(account: Account, period: Period) -> QuerySet[HourlyUsage]:
    return HourlyUsage.objects.filter(account=account, hour__gte=period.start, hour__lt=period.end)


def totals(*, account: Account, period: Period) -> Totals:
    return Totals(**hourly(account, period).aggregate(**_sums()))


@dataclass(frozen=True)
class ModelDay:
    day: date
    model: str
    cost: Decimal
    tokens: int


def spend_by_model_per_day(*, account: Account, period: Period) -> list[ModelDay]:
    """Daily spend per model in the dashboard's time zone."""
    rows = (
        hourly(account, period)
        .annotate(day=TruncDate("hour", tzinfo=period.tz))
        .values("day", "model")
        .annotate(cost=Coalesce(Sum("cost"), ZERO), tokens=Sum(F("prompt_tokens") + F("completion_tokens")))
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
        hourly(account, period)
        .values(dimension)
        .annotate(**_sums())
        .order_by("-cost", "-prompt_tokens", dimension)[:limit]
    )
    return [GroupTotals(key=row.pop(dimension) or "—", totals=Totals(**row)) for row in rows]


def unpriced_models(*, account: Account, period: Period) -> list[str]:
    return list(
        hourly(account, period)
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


def summary(*, account: Account, period: Period, group_by: str) -> tuple[list[SummaryRow], Totals]:
    """Totals per model, key, team or day (in the dashboard's time zone) and overall."""
    dimension = SUMMARY_DIMENSIONS[group_by]
    rows = hourly(account, period)
    if group_by == "day":
        rows = rows.annotate(day=TruncDate("hour", tzinfo=period.tz))
    grouped = rows.values(dimension).annotate(**_sums()).order_by(dimension)
    result = []
    for row in grouped:
        key = row.pop(dimension)
        result.append(SummaryRow(key=key.isoformat() if group_by == "day" else (key or ""), totals=Totals(**row)))
    return result, totals(account=account, period=period)


def repricing_in_progress(account: Account) -> int | None:
    """Records still to be repriced for the account after a price change, or None when idle.

    Runs not updated for RepricingRun.STALE_AFTER are taken as dead workers and ignored.
    """
    # Imported here: this function was appended to a module shared with other work.
    from django.utils import timezone

    from usage.models import RepricingRun

    remaining = RepricingRun.objects.filter(
        account=account, finished_at__isnull=True, updated_at__gte=timezone.now() - RepricingRun.STALE_AFTER
    ).aggregate(remaining=Sum(F("total") - F("done")))["remaining"]
    return None if remaining is None else max(remaining, 0)
