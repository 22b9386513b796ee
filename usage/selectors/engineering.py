"""The engineer pages' reads: models and one model's detail (usage per day, latency, top keys
and teams), errors by cause, and what request-level detail is kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy, ngettext

from usage import latency
from usage.error_causes import REMEDIES
from usage.models import Account, ErrorCause, LatencyHistogram, RawRetention, UsageRecord
from usage.periods import Period
from usage.selectors.totals import ZERO, GroupTotals, Totals, rollup_rows, rollup_sums, totals

MODEL_SORTS: dict[str, str | Promise] = {
    "model": gettext_lazy("Model"),
    "requests": gettext_lazy("Requests"),
    "prompt_tokens": gettext_lazy("Prompt tokens"),
    "completion_tokens": gettext_lazy("Completion tokens"),
    "cached_tokens": gettext_lazy("Cached tokens"),
    "cost": gettext_lazy("Usage value"),
    "share": gettext_lazy("Share of value"),
    "tokens_per_request": gettext_lazy("Tokens per request"),
    "error_rate": gettext_lazy("Error rate"),
    "estimated_share": gettext_lazy("Estimated"),
}
DEFAULT_MODEL_SORT = "-cost"


@dataclass(frozen=True)
class ModelRow:
    model: str
    totals: Totals
    share: float  # of the whole period's cost (all models), 0 when nothing was spent

    @property
    def tokens_per_request(self) -> float:
        return self.totals.tokens / self.totals.requests if self.totals.requests else 0.0


def _model_sort_key(sort: str) -> tuple[str, bool]:
    """("cost", True) for "-cost"; unknown fields fall back to the default order."""
    field, descending = sort.removeprefix("-"), sort.startswith("-")
    if field not in MODEL_SORTS:
        return _model_sort_key(DEFAULT_MODEL_SORT)
    return field, descending


def model_rows(*, account: Account, period: Period, search: str = "", sort: str = DEFAULT_MODEL_SORT) -> list[ModelRow]:
    """Per-model totals for the period from the rollup, optionally only models whose name
    contains `search` (case-insensitive), in the order `sort` names ("-cost", "model"…).
    Ties are broken by model name, so the order is stable."""
    whole = totals(account=account, period=period).cost
    rows = rollup_rows(account, period)
    if search:
        rows = rows.filter(model__icontains=search)
    found = [
        ModelRow(model=row.pop("model"), totals=Totals(**row), share=float(row["cost"] / whole) if whole else 0.0)
        for row in rows.values("model").annotate(**rollup_sums()).order_by("model")
    ]
    field, descending = _model_sort_key(sort)

    def value(row: ModelRow) -> Any:
        if field == "model":
            return row.model.lower()
        if field in ("share", "tokens_per_request"):
            return getattr(row, field)
        return getattr(row.totals, field)

    found.sort(key=lambda row: row.model)
    found.sort(key=value, reverse=descending)  # stable: equal values stay in name order
    return found


def dimension_values(*, account: Account, period: Period, dimension: str) -> list[str]:
    """The distinct models, key names ("api_key__name") or teams with usage in the period."""
    return [
        value
        for value in rollup_rows(account, period).values_list(dimension, flat=True).distinct().order_by(dimension)
        if value
    ]


@dataclass(frozen=True)
class ModelDayUsage:
    day: date
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost: Decimal


def model_usage_per_day(*, account: Account, period: Period, model: str) -> list[ModelDayUsage]:
    """One model's daily tokens and cost in the dashboard's time zone, from the rollup."""
    rows = (
        rollup_rows(account, period)
        .filter(model=model)
        .values("day")
        .annotate(
            requests=Coalesce(Sum("requests"), 0),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
            cached_tokens=Coalesce(Sum("cached_tokens"), 0),
            cost=Coalesce(Sum("cost"), ZERO),
        )
        .order_by("day")
    )
    return [ModelDayUsage(**row) for row in rows]


def model_totals(*, account: Account, period: Period, model: str) -> Totals:
    return Totals(**rollup_rows(account, period).filter(model=model).aggregate(**rollup_sums()))


def top_by_for_model(
    *, account: Account, period: Period, model: str, dimension: str, limit: int = 5
) -> list[GroupTotals]:
    """Like top_by, within one model: its keys ("api_key__name") or teams by spend, then tokens."""
    rows = (
        rollup_rows(account, period)
        .filter(model=model)
        .values(dimension)
        .annotate(**rollup_sums())
        .order_by("-cost", "-prompt_tokens", dimension)[:limit]
    )
    return [GroupTotals(key=row.pop(dimension) or "—", totals=Totals(**row)) for row in rows]


@dataclass(frozen=True)
class Latency:
    samples: int
    p50_ms: int | None
    p95_ms: int | None
    mean_ms: float | None  # from the rollup's latency sums


def model_latency(*, account: Account, period: Period, model: str) -> Latency:
    """Latency percentiles of one model's requests in the period (nearest rank, like
    PostgreSQL's percentile_disc), within 1% (usage.latency): read from the latency
    histogram, a few hundred rows a day, rather than from a month of records. While the
    histogram's days belong to another time zone (DASHBOARD_TIME_ZONE changed, rebuild_rollups
    not run yet), the records are read instead, like `rollup_rows` falls back to the hourly rollup."""
    rollup = (
        rollup_rows(account, period)
        .filter(model=model)
        .aggregate(total=Coalesce(Sum("latency_ms_sum"), 0), count=Coalesce(Sum("latency_count"), 0))
    )
    mean = rollup["total"] / rollup["count"] if rollup["count"] else None
    if account.daily_rollup_zone == settings.DASHBOARD_TIME_ZONE:
        counts = list(
            LatencyHistogram.objects.filter(
                account=account, model=model, day__gte=period.first_day, day__lte=period.last_day
            )
            .values("bucket")
            .annotate(n=Sum("requests"))
            .order_by("bucket")
            .values_list("bucket", "n")
        )
    else:
        counts = _latency_counts_from_records(account, period, model)
    samples = sum(n for _, n in counts)
    return Latency(samples, latency.percentile(counts, 0.5), latency.percentile(counts, 0.95), mean)


def _latency_counts_from_records(account: Account, period: Period, model: str) -> list[tuple[int, int]]:
    rows = (
        UsageRecord.objects.filter(
            account=account, model=model, occurred_at__gte=period.start, occurred_at__lt=period.end
        )
        .filter(latency_ms__isnull=False)
        .values_list("latency_ms")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts: dict[int, int] = {}
    for latency_ms, n in rows:
        bucket = latency.bucket_of(latency_ms)
        counts[bucket] = counts.get(bucket, 0) + n
    return sorted(counts.items())


@dataclass(frozen=True)
class CauseCount:
    cause: str
    label: str
    requests: int
    share: float  # of all failed requests in the selection
    last_seen: datetime | None
    remedy: str


def errors_by_cause(*, account: Account, period: Period, model: str = "") -> list[CauseCount]:
    """Failed requests per error cause, most frequent first. The rollup counts errors but not
    their causes, so this groups the period's failed records (the success rows are filtered
    out in the database)."""
    failed = UsageRecord.objects.filter(
        account=account, occurred_at__gte=period.start, occurred_at__lt=period.end
    ).exclude(error_cause=ErrorCause.NONE)
    if model:
        failed = failed.filter(model=model)
    rows = list(
        failed.values("error_cause").annotate(n=Count("id"), last=Max("occurred_at")).order_by("-n", "error_cause")
    )
    all_failed = sum(row["n"] for row in rows)
    labels = dict(ErrorCause.choices)
    return [
        CauseCount(
            cause=row["error_cause"],
            label=str(labels.get(row["error_cause"], row["error_cause"])),
            requests=row["n"],
            share=row["n"] / all_failed,
            last_seen=row["last"],
            remedy=str(REMEDIES.get(row["error_cause"], "")),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class CauseDay:
    day: date
    cause: str
    requests: int


def errors_per_day(*, account: Account, period: Period) -> list[CauseDay]:
    """Failed requests per day (dashboard time zone) and cause."""
    rows = (
        UsageRecord.objects.filter(account=account, occurred_at__gte=period.start, occurred_at__lt=period.end)
        .exclude(error_cause=ErrorCause.NONE)
        .annotate(day=TruncDate("occurred_at", tzinfo=period.tz))
        .values("day", "error_cause")
        .annotate(n=Count("id"))
        .order_by("day", "error_cause")
    )
    return [CauseDay(day=row["day"], cause=row["error_cause"], requests=row["n"]) for row in rows]


def raw_detail_notice(start: datetime, end: datetime) -> str:
    """What to say when some of [start, end) is before the raw records retention keeps
    (RAW_RETENTION_MONTHS): the totals still cover it, single requests do not. "" otherwise."""
    kept_from = RawRetention.kept_from_now()
    if kept_from is None or start >= kept_from:
        return ""
    months, day = settings.RAW_RETENTION_MONTHS, f"{kept_from:%Y-%m-%d}"
    # Whole sentences, one per case, so that a language can order them its own way.
    if months and end <= kept_from:
        text = ngettext(
            "Request-level detail kept for %(months)d month (from %(day)s); this period is summarised only: "
            "totals, charts and reports still count every request, single requests are not listed.",
            "Request-level detail kept for %(months)d months (from %(day)s); this period is summarised only: "
            "totals, charts and reports still count every request, single requests are not listed.",
            months,
        )
    elif months:
        text = ngettext(
            "Request-level detail kept for %(months)d month (from %(day)s); before %(day)s this period is "
            "summarised only: totals, charts and reports still count every request, single requests are not listed.",
            "Request-level detail kept for %(months)d months (from %(day)s); before %(day)s this period is "
            "summarised only: totals, charts and reports still count every request, single requests are not listed.",
            months,
        )
    elif end <= kept_from:
        text = gettext(
            "Request-level detail no longer kept (from %(day)s); this period is summarised only: "
            "totals, charts and reports still count every request, single requests are not listed."
        )
    else:
        text = gettext(
            "Request-level detail no longer kept (from %(day)s); before %(day)s this period is summarised only: "
            "totals, charts and reports still count every request, single requests are not listed."
        )
    return text % {"months": months, "day": day}
