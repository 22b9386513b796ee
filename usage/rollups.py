"""The rollups every page reads: HourlyUsage (UTC hours) and DailyUsage (days in
DASHBOARD_TIME_ZONE), and beside them the LatencyHistogram (requests per latency bucket,
model and day). Added to by ingestion in the same transaction as the records, and
rebuildable from the records to prove them exact."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal, localcontext
from functools import cache
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncHour

from usage import latency
from usage.models import (
    TOTAL_MONEY,
    Account,
    DailyUsage,
    ErrorCause,
    HourlyUsage,
    LatencyHistogram,
    RawRetention,
    TokensSource,
    UsageRecord,
    UsageTotals,
)
from usage.sql import Staged, upsert_adding


@dataclass(frozen=True)
class Rollup:
    model: type[UsageTotals]  # HourlyUsage or DailyUsage, reached through _default_manager
    bucket_field: str  # "hour" or "day"
    bucket: Callable[[datetime], datetime | date]  # a record's occurred_at → its bucket

    @property
    def group(self) -> tuple[str, ...]:
        return ("account", self.bucket_field, "model", "api_key", "team")

    @property
    def conflict_sql(self) -> str:
        return f"account_id, {self.bucket_field}, model, COALESCE(api_key_id, 0), team"


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local_day(moment: datetime) -> date:
    return moment.astimezone(_zone(settings.DASHBOARD_TIME_ZONE)).date()


HOURLY = Rollup(HourlyUsage, "hour", _hour)
DAILY = Rollup(DailyUsage, "day", _local_day)
ROLLUPS = (HOURLY, DAILY)


def deltas_for(rows: Iterable[dict[str, Any]], *, sign: int = 1, rollup: Rollup = HOURLY) -> list[dict[str, Any]]:
    """Per-group sums of record rows (as built for insertion), sorted so that
    concurrent writers lock groups in the same order."""
    groups: dict[tuple, dict[str, Any]] = {}
    # Sums exact to the column's width (Python's default context keeps 28 digits).
    with localcontext(prec=TOTAL_MONEY["max_digits"]):
        for row in rows:
            group = (row["account"], rollup.bucket(row["occurred_at"]), row["model"], row["api_key"], row["team"])
            acc = groups.get(group)
            if acc is None:
                acc = dict(zip(rollup.group, group, strict=True)) | {c: 0 for c in UsageTotals.COUNTERS}
                acc["cost"] = Decimal(0)
                groups[group] = acc
            estimated = row["tokens_source"] == TokensSource.ESTIMATED
            acc["requests"] += sign
            acc["errors"] += sign * (row["error_cause"] != ErrorCause.NONE)
            acc["prompt_tokens"] += sign * row["prompt_tokens"]
            acc["completion_tokens"] += sign * row["completion_tokens"]
            acc["cached_tokens"] += sign * row["cached_tokens"]
            acc["reasoning_tokens"] += sign * row["reasoning_tokens"]
            acc["estimated_requests"] += sign * estimated
            acc["estimated_tokens"] += sign * estimated * (row["prompt_tokens"] + row["completion_tokens"])
            acc["unpriced_requests"] += sign * (row["cost"] is None)
            acc["cost"] += sign * (row["cost"] or 0)
            if row["latency_ms"] is not None:
                acc["latency_ms_sum"] += sign * row["latency_ms"]
                acc["latency_count"] += sign
    return [groups[g] for g in sorted(groups, key=lambda g: (g[0], g[1], g[2], g[3] or 0, g[4]))]


def latency_deltas(rows: Iterable[dict[str, Any]], *, sign: int = 1) -> list[dict[str, Any]]:
    """Requests per (account, model, day, latency bucket) of record rows that have a latency."""
    counts: dict[tuple, int] = {}
    for row in rows:
        if row["latency_ms"] is not None:
            group = (row["account"], row["model"], _local_day(row["occurred_at"]), latency.bucket_of(row["latency_ms"]))
            counts[group] = counts.get(group, 0) + sign
    return [
        dict(zip(("account", "model", "day", "bucket"), group, strict=True), requests=counts[group])
        for group in sorted(counts)
    ]


LATENCY_CONFLICT_SQL = "account_id, model, day, bucket"


def add(rows: Iterable[dict[str, Any]], *, sign: int = 1) -> None:
    """Add record rows (as built for insertion) to the rollups and the latency histogram;
    `sign=-1` takes them away."""
    rows = list(rows)
    for rollup in ROLLUPS:
        deltas = deltas_for(rows, sign=sign, rollup=rollup)
        upsert_adding(rollup.model, deltas, conflict_sql=rollup.conflict_sql, counters=UsageTotals.COUNTERS)
    histogram = latency_deltas(rows, sign=sign)
    upsert_adding(LatencyHistogram, histogram, conflict_sql=LATENCY_CONFLICT_SQL, counters=("requests",))


def move(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> None:
    """`add(before, sign=-1)` then `add(after)`, with each rollup's and the histogram's deltas
    netted first: what comes out even (a repricing keeps every latency, a team move every
    model and day) is not written at all, and the rest in one upsert each."""
    before, after = list(before), list(after)
    for rollup in ROLLUPS:
        deltas = deltas_for(before, sign=-1, rollup=rollup) + deltas_for(after, rollup=rollup)
        netted = _netted(deltas, rollup.group, UsageTotals.COUNTERS)
        upsert_adding(rollup.model, netted, conflict_sql=rollup.conflict_sql, counters=UsageTotals.COUNTERS)
    histogram = latency_deltas(before, sign=-1) + latency_deltas(after)
    netted = _netted(histogram, ("account", "model", "day", "bucket"), ("requests",))
    upsert_adding(LatencyHistogram, netted, conflict_sql=LATENCY_CONFLICT_SQL, counters=("requests",))


def _netted(deltas: list[dict[str, Any]], group: tuple[str, ...], counters: tuple[str, ...]) -> list[dict[str, Any]]:
    """Deltas of the same group summed, those that sum to nothing left out, in lock order."""
    sums: dict[tuple, dict[str, Any]] = {}
    for delta in deltas:
        key = tuple(delta[name] for name in group)
        known = sums.get(key)
        if known is None:
            sums[key] = dict(delta)
        else:
            for counter in counters:
                known[counter] += delta[counter]
    kept = [row for row in sums.values() if any(row[counter] for counter in counters)]
    return sorted(kept, key=lambda row: tuple(0 if row[name] is None else row[name] for name in group))


def _bucket_expression(rollup: Rollup) -> TruncHour | TruncDate:
    if rollup is DAILY:
        return TruncDate("occurred_at", tzinfo=_zone(settings.DASHBOARD_TIME_ZONE))
    return TruncHour("occurred_at")


def raw_start(rollup: Rollup) -> tuple[datetime | None, datetime | date | None]:
    """From which moment, and which bucket of `rollup`, the raw records are all still there
    (None, None: all of them are). Buckets before it hold records retention has dropped
    (RAW_RETENTION_MONTHS): they are never recounted, verified or rebuilt, only kept."""
    kept_from = RawRetention.kept_from_now()
    if kept_from is None:
        return None, None
    if rollup is HOURLY:
        return kept_from, _hour(kept_from)
    zone = _zone(settings.DASHBOARD_TIME_ZONE)
    day = _local_day(kept_from)
    midnight = datetime.combine(day, time(0), tzinfo=zone)
    if midnight < kept_from:  # that day's first hours are gone: the next day is the first whole one
        day += timedelta(days=1)
        midnight = datetime.combine(day, time(0), tzinfo=zone)
    return midnight, day


def recount(account: Account, rollup: Rollup = HOURLY) -> dict[tuple, dict[str, Any]]:
    """Rollup values computed from scratch from the raw records, keyed by group (the buckets
    whose records are all kept, see `raw_start`)."""
    estimated = Q(tokens_source=TokensSource.ESTIMATED)
    # Aliases differ from the field names: Django refuses Sum("x") annotated as "x".
    aggregates = {
        "requests": Count("id"),
        "errors": Count("id", filter=~Q(error_cause=ErrorCause.NONE)),
        "prompt_tokens": Coalesce(Sum("prompt_tokens"), 0),
        "completion_tokens": Coalesce(Sum("completion_tokens"), 0),
        "cached_tokens": Coalesce(Sum("cached_tokens"), 0),
        "reasoning_tokens": Coalesce(Sum("reasoning_tokens"), 0),
        "estimated_requests": Count("id", filter=estimated),
        "estimated_tokens": Coalesce(Sum(F("prompt_tokens") + F("completion_tokens"), filter=estimated), 0),
        "unpriced_requests": Count("id", filter=Q(cost__isnull=True)),
        "cost": Coalesce(Sum("cost"), Decimal(0)),
        "latency_ms_sum": Coalesce(Sum("latency_ms"), 0),
        "latency_count": Count("latency_ms"),
    }
    records = UsageRecord.objects.filter(account=account)
    since, _ = raw_start(rollup)
    if since is not None:
        records = records.filter(occurred_at__gte=since)
    rows = (
        records.annotate(bucket=_bucket_expression(rollup))
        .values("bucket", "model", "api_key", "team")
        .annotate(**{f"sum_{name}": agg for name, agg in aggregates.items()})
        .order_by()
    )
    result: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        sums = cast(dict[str, Any], row)  # the annotations a type checker does not see
        group = (row["bucket"], row["model"], row["api_key"], row["team"])
        result[group] = {name: sums[f"sum_{name}"] for name in aggregates}
    return result


def stored(account: Account, rollup: Rollup = HOURLY) -> dict[tuple, dict[str, Any]]:
    """The stored rollup, keyed like `recount` (the same buckets); empty groups are ignored."""
    result: dict[tuple, dict[str, Any]] = {}
    bucket = rollup.bucket_field
    for row in _recountable(rollup, account).values(bucket, "model", "api_key", "team", *UsageTotals.COUNTERS):
        key = (row.pop(bucket), row.pop("model"), row.pop("api_key"), row.pop("team"))
        if row["requests"]:
            result[key] = row
    return result


@dataclass(frozen=True)
class Mismatch:
    group: tuple
    stored: dict[str, Any] | None
    recounted: dict[str, Any] | None


def recount_latency(account: Account) -> dict[tuple, int]:
    """The latency histogram computed from the records, keyed by (model, day, bucket)."""
    records = UsageRecord.objects.filter(account=account, latency_ms__isnull=False)
    since, _ = raw_start(DAILY)
    if since is not None:
        records = records.filter(occurred_at__gte=since)
    rows = (
        records.annotate(day=_bucket_expression(DAILY))
        .values_list("model", "day", "latency_ms")
        .annotate(requests=Count("id"))
        .order_by()
    )
    result: dict[tuple, int] = {}
    for model, day, latency_ms, requests in rows.iterator(chunk_size=10_000):
        group = (model, day, latency.bucket_of(latency_ms))
        result[group] = result.get(group, 0) + requests
    return result


def stored_latency(account: Account) -> dict[tuple, int]:
    rows = _recountable_latency(account).filter(requests__gt=0)
    return {(model, day, bucket): n for model, day, bucket, n in rows.values_list("model", "day", "bucket", "requests")}


def _recountable_latency(account: Account) -> QuerySet[LatencyHistogram]:
    rows = LatencyHistogram.objects.filter(account=account)
    _, first = raw_start(DAILY)
    return rows if first is None else rows.filter(day__gte=first)


def verify(account: Account) -> list[Mismatch]:
    """Groups of either rollup, or buckets of the latency histogram, where the stored values
    differ from a recount of the records."""
    mismatches = []
    for rollup in ROLLUPS:
        expected, actual = recount(account, rollup), stored(account, rollup)
        mismatches += [
            Mismatch((rollup.bucket_field, *group), actual.get(group), expected.get(group))
            for group in sorted(set(expected) | set(actual), key=repr)
            if not _same(actual.get(group), expected.get(group))
        ]
    expected_latency, actual_latency = recount_latency(account), stored_latency(account)
    mismatches += [
        Mismatch(
            ("latency", *group),
            _requests(actual_latency.get(group)),
            _requests(expected_latency.get(group)),
        )
        for group in sorted(set(expected_latency) | set(actual_latency), key=repr)
        if actual_latency.get(group) != expected_latency.get(group)
    ]
    return mismatches


def _requests(count: int | None) -> dict[str, Any] | None:
    return None if count is None else {"requests": count}


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    # SQLite keeps decimals as floating point; compare money to a ten-millionth there.
    return all(
        abs(Decimal(a[c]) - Decimal(b[c])) < Decimal("1e-7") if c == "cost" else a[c] == b[c]
        for c in UsageTotals.COUNTERS
    )


def _recountable(rollup: Rollup, account: Account) -> QuerySet[UsageTotals]:
    """The account's rollup rows of the buckets whose raw records are all kept."""
    rows = rollup.model._default_manager.filter(account=account)
    _, first = raw_start(rollup)
    return rows if first is None else rows.filter(**{f"{rollup.bucket_field}__gte": first})


@transaction.atomic
def rebuild(account: Account) -> int:
    """Replace the account's rollups and latency histogram with a recount of its records;
    returns the hourly group count.

    Buckets before the raw records retention keeps (`raw_start`) are left as they are: their
    records are gone, and the rollups are what is left of them."""
    counts = []
    for rollup in ROLLUPS:
        _recountable(rollup, account).delete()
        rows = [
            rollup.model(
                account=account, **{rollup.bucket_field: bucket}, model=model, api_key_id=key, team=team, **values
            )
            for (bucket, model, key, team), values in recount(account, rollup).items()
        ]
        rollup.model._default_manager.bulk_create(rows, batch_size=2000)
        counts.append(len(rows))
    _recountable_latency(account).delete()
    LatencyHistogram.objects.bulk_create(
        (
            LatencyHistogram(account=account, model=model, day=day, bucket=bucket, requests=requests)
            for (model, day, bucket), requests in recount_latency(account).items()
        ),
        batch_size=2000,
    )
    Account.objects.filter(pk=account.pk).update(daily_rollup_zone=settings.DASHBOARD_TIME_ZONE)
    account.daily_rollup_zone = settings.DASHBOARD_TIME_ZONE
    return counts[0]


# The same sums as `deltas_for`, of the columns of staged record rows (usage.sql.staged).
_STAGED_TOTALS = {
    "requests": "count(*)",
    "errors": "count(*) FILTER (WHERE error_cause <> %(none)s)",
    "prompt_tokens": "coalesce(sum(prompt_tokens), 0)",
    "completion_tokens": "coalesce(sum(completion_tokens), 0)",
    "cached_tokens": "coalesce(sum(cached_tokens), 0)",
    "reasoning_tokens": "coalesce(sum(reasoning_tokens), 0)",
    "estimated_requests": "count(*) FILTER (WHERE tokens_source = %(estimated)s)",
    "estimated_tokens": (
        "coalesce(sum(prompt_tokens::bigint + completion_tokens) FILTER (WHERE tokens_source = %(estimated)s), 0)"
    ),
    "unpriced_requests": "count(*) FILTER (WHERE cost IS NULL)",
    "cost": "coalesce(sum(cost), 0)",
    "latency_ms_sum": "coalesce(sum(latency_ms), 0)",
    "latency_count": "count(latency_ms)",
}
_STAGED_BUCKETS = {
    "hour": "date_trunc('hour', occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "day": "(occurred_at AT TIME ZONE %(zone)s)::date",  # as TruncDate in `recount`
}


def add_staged(stage: Staged) -> None:
    """`add` of the record rows in `stage`, summed by PostgreSQL from the staging table: the
    same groups, sums and lock order, without a Python loop over the rows."""
    assert set(_STAGED_TOTALS) == set(UsageTotals.COUNTERS)
    params: dict[str, Any] = {
        "none": ErrorCause.NONE.value,
        "estimated": TokensSource.ESTIMATED.value,
        "zone": settings.DASHBOARD_TIME_ZONE,
    }
    counters = ", ".join(UsageTotals.COUNTERS)
    sums = ", ".join(_STAGED_TOTALS[name] for name in UsageTotals.COUNTERS)
    with connection.cursor() as cursor:
        for rollup in ROLLUPS:
            table = rollup.model._meta.db_table
            bucket = rollup.bucket_field
            cursor.execute(
                f"INSERT INTO {table} (account_id, {bucket}, model, api_key_id, team, {counters}) "  # noqa: S608
                f"SELECT account_id, {_STAGED_BUCKETS[bucket]} AS {bucket}, model, api_key_id, team, {sums} "
                f"FROM {stage.table} GROUP BY account_id, {bucket}, model, api_key_id, team "
                f"ORDER BY {rollup.conflict_sql} ON CONFLICT ({rollup.conflict_sql}) DO UPDATE SET "
                + ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in UsageTotals.COUNTERS),
                params,
            )
        bucket_sql, bucket_params = latency.bucket_sql("latency_ms")
        params.update(bucket_params)
        table = LatencyHistogram._meta.db_table
        cursor.execute(
            f"INSERT INTO {table} (account_id, model, day, bucket, requests) "  # noqa: S608
            f"SELECT account_id, model, {_STAGED_BUCKETS['day']} AS day, "
            f"{bucket_sql} AS bucket, count(*) FROM {stage.table} WHERE latency_ms IS NOT NULL "
            f"GROUP BY account_id, model, day, bucket ORDER BY {LATENCY_CONFLICT_SQL} "
            f"ON CONFLICT ({LATENCY_CONFLICT_SQL}) DO UPDATE SET requests = {table}.requests + excluded.requests",
            params,
        )
