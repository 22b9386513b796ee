"""Reads for the usage pages and API. Totals come from the daily rollup, aggregated in the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Aggregate, Count, F, IntegerField, Max, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from usage.errors import REMEDIES
from usage.models import Account, ApiKey, DailyUsage, ErrorCause, HourlyUsage, RepricingRun, UsageRecord
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


def _sums() -> dict[str, Coalesce]:
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
    return Totals(**rollup_rows(account, period).aggregate(**_sums()))


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
        .annotate(**_sums())
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
    grouped = rows.values(dimension).annotate(**_sums()).order_by(dimension)
    result = []
    for row in grouped:
        key = row.pop(dimension)
        result.append(SummaryRow(key=key.isoformat() if group_by == "day" else (key or ""), totals=Totals(**row)))
    return result, Totals(**rows.aggregate(**_sums()))


# --- Keys & teams --------------------------------------------------------------------------

NO_TEAM = "~none"  # the team filter's value for usage recorded without a team


@dataclass(frozen=True)
class KeyUsage:
    """A key's usage in the period (zeros when unused) and the last day it was seen at all."""

    key_id: int | None
    name: str
    last4: str
    team: str
    provider_status: str
    totals: Totals
    last_seen: date | None


def _team_filter(rows: QuerySet[Any], team: str | None) -> QuerySet[Any]:
    if team is None:
        return rows
    return rows.filter(team="" if team == NO_TEAM else team)


def usage_by_key(*, account: Account, period: Period, team: str | None = None) -> list[KeyUsage]:
    """Every key of the account (or, with `team`, those used by or belonging to that team), with its
    usage in the period, plus one row without a key for requests that named none; by spend, then name.

    Two grouped queries over the rollup (period sums, and the last day seen ever) and one over ApiKey.
    """
    sums: dict[int | None, Totals] = {
        row.pop("api_key"): Totals(**row)
        for row in _team_filter(rollup_rows(account, period), team).values("api_key").annotate(**_sums()).order_by()
    }
    last_seen: dict[int | None, date] = dict(
        DailyUsage.objects.filter(account=account, requests__gt=0)
        .values("api_key")
        .annotate(last=Max("day"))
        .order_by()
        .values_list("api_key", "last")
    )
    keys = ApiKey.objects.filter(account=account)
    if team is not None:
        owner = "" if team == NO_TEAM else team
        keys = keys.filter(Q(team=owner) | Q(pk__in=[pk for pk in sums if pk is not None]))
    rows = [
        KeyUsage(
            key_id=key.pk,
            name=key.name,
            last4=key.last4,
            team=key.team,
            provider_status=key.provider_status,
            totals=sums.get(key.pk, Totals()),
            last_seen=last_seen.get(key.pk),
        )
        for key in keys.only("id", "name", "last4", "team", "provider_status")
    ]
    if None in sums:
        rows.append(KeyUsage(None, "", "", "", "", sums[None], last_seen.get(None)))
    return sorted(rows, key=lambda r: (-r.totals.cost, -r.totals.tokens, r.key_id is None, r.name.lower()))


@dataclass(frozen=True)
class TeamUsage:
    team: str  # "" for usage recorded without a team
    keys: int  # distinct keys that sent requests for the team in the period
    totals: Totals


def usage_by_team(*, account: Account, period: Period) -> list[TeamUsage]:
    """Usage per team as recorded with each request (its metadata, else its key's team then), by spend."""
    rows = (
        rollup_rows(account, period)
        .filter(requests__gt=0)
        .values("team")
        .annotate(**_sums(), keys=Count("api_key", distinct=True))
        .order_by("-cost", "-prompt_tokens", "team")
    )
    return [TeamUsage(team=row.pop("team"), keys=row.pop("keys"), totals=Totals(**row)) for row in rows]


def team_names(*, account: Account) -> list[str]:
    """Teams the filter offers: those keys belong to and those recorded on usage (without "")."""
    recorded = DailyUsage.objects.filter(account=account).exclude(team="").values_list("team", flat=True)
    owners = ApiKey.objects.filter(account=account).exclude(team="").values_list("team", flat=True)
    return sorted(set(recorded.distinct().order_by()) | set(owners.distinct().order_by()), key=str.lower)


@dataclass(frozen=True)
class RepricingProgress:
    done: int
    total: int

    @property
    def remaining(self) -> int:
        return max(self.total - self.done, 0)


def repricing_progress(account: Account) -> RepricingProgress | None:
    """Records re-costed so far out of those the running repricing jobs look at, or None when idle.

    One aggregate over the (account, finished_at) index; runs not updated for
    RepricingRun.STALE_AFTER are taken as dead workers and ignored.
    """
    found = RepricingRun.objects.filter(
        account=account, finished_at__isnull=True, updated_at__gte=timezone.now() - RepricingRun.STALE_AFTER
    ).aggregate(done=Sum("done"), total=Sum("total"))
    if found["total"] is None:
        return None
    return RepricingProgress(done=min(found["done"] or 0, found["total"]), total=found["total"])


# --- Engineer pages: Models, model detail, Errors, Requests filters ---------------------------

MODEL_SORTS = {
    "model": "Model",
    "requests": "Requests",
    "prompt_tokens": "Prompt tokens",
    "completion_tokens": "Completion tokens",
    "cached_tokens": "Cached tokens",
    "cost": "Usage value",
    "share": "Share of value",
    "tokens_per_request": "Tokens per request",
    "error_rate": "Error rate",
    "estimated_share": "Estimated",
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
        for row in rows.values("model").annotate(**_sums()).order_by("model")
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
    return Totals(**rollup_rows(account, period).filter(model=model).aggregate(**_sums()))


def top_by_for_model(
    *, account: Account, period: Period, model: str, dimension: str, limit: int = 5
) -> list[GroupTotals]:
    """Like top_by, within one model: its keys ("api_key__name") or teams by spend, then tokens."""
    rows = (
        rollup_rows(account, period)
        .filter(model=model)
        .values(dimension)
        .annotate(**_sums())
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
    PostgreSQL's percentile_disc). The rollup only keeps sums, so percentiles read the raw
    records of that model and period, through the (account, model, occurred_at) index."""
    import math

    rollup = (
        rollup_rows(account, period)
        .filter(model=model)
        .aggregate(total=Coalesce(Sum("latency_ms_sum"), 0), count=Coalesce(Sum("latency_count"), 0))
    )
    mean = rollup["total"] / rollup["count"] if rollup["count"] else None
    timed = UsageRecord.objects.filter(
        account=account, model=model, occurred_at__gte=period.start, occurred_at__lt=period.end
    ).filter(latency_ms__isnull=False)
    if connection.vendor == "postgresql":

        class PercentileDisc(Aggregate):
            function = "PERCENTILE_DISC"
            template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

        found = timed.aggregate(
            samples=Count("latency_ms"),  # not "id": the latency index alone then answers
            p50=PercentileDisc("latency_ms", fraction=0.5, output_field=IntegerField()),
            p95=PercentileDisc("latency_ms", fraction=0.95, output_field=IntegerField()),
        )
        return Latency(found["samples"], found["p50"], found["p95"], mean)
    samples = timed.count()
    if not samples:
        return Latency(0, None, None, mean)
    ordered = timed.order_by("latency_ms").values_list("latency_ms", flat=True)

    def nearest_rank(fraction: float) -> int:
        rank = ordered[max(math.ceil(fraction * samples), 1) - 1]
        assert rank is not None  # `timed` has a latency
        return rank

    return Latency(samples, nearest_rank(0.5), nearest_rank(0.95), mean)


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
            label=labels.get(row["error_cause"], row["error_cause"]),
            requests=row["n"],
            share=row["n"] / all_failed,
            last_seen=row["last"],
            remedy=REMEDIES.get(row["error_cause"], ""),
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
    from usage.models import RawRetention

    kept_from = RawRetention.kept_from_now()
    if kept_from is None or start >= kept_from:
        return ""
    months = settings.RAW_RETENTION_MONTHS
    kept = f"kept for {months} month{'s' if months != 1 else ''}" if months else "no longer kept"
    scope = "this period is" if end <= kept_from else f"before {kept_from:%Y-%m-%d} this period is"
    return (
        f"Request-level detail {kept} (from {kept_from:%Y-%m-%d}); {scope} summarised only: "
        "totals, charts and reports still count every request, single requests are not listed."
    )
