"""HourlyUsage: the rollup every page reads. Added to by ingestion in the same
transaction as the records, and rebuildable from the records to prove it exact."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncHour

from usage.models import Account, ErrorCause, HourlyUsage, TokensSource, UsageRecord
from usage.sql import upsert_adding

GROUP = ("account", "hour", "model", "api_key", "team")
CONFLICT_SQL = "account_id, hour, model, COALESCE(api_key_id, 0), team"


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def deltas_for(rows: Iterable[dict[str, Any]], *, sign: int = 1) -> list[dict[str, Any]]:
    """Per-group sums of record rows (as built for insertion), sorted so that
    concurrent writers lock groups in the same order."""
    groups: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        group = (row["account"], _hour(row["occurred_at"]), row["model"], row["api_key"], row["team"])
        acc = groups.get(group)
        if acc is None:
            acc = dict(zip(GROUP, group, strict=True)) | {c: 0 for c in HourlyUsage.COUNTERS}
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


def add(rows: Iterable[dict[str, Any]], *, sign: int = 1) -> None:
    upsert_adding(HourlyUsage, deltas_for(rows, sign=sign), conflict_sql=CONFLICT_SQL, counters=HourlyUsage.COUNTERS)


def recount(account: Account) -> dict[tuple, dict[str, Any]]:
    """Rollup values computed from scratch from the raw records, keyed by group."""
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
    rows = (
        UsageRecord.objects.filter(account=account)
        .annotate(hour=TruncHour("occurred_at"))
        .values("hour", "model", "api_key", "team")
        .annotate(**{f"sum_{name}": agg for name, agg in aggregates.items()})
        .order_by()
    )
    result = {}
    for row in rows:
        group = (row["hour"], row["model"], row["api_key"], row["team"])
        result[group] = {name: row[f"sum_{name}"] for name in aggregates}
    return result


def stored(account: Account) -> dict[tuple, dict[str, Any]]:
    """The stored rollup, keyed like `recount`; empty groups are ignored."""
    result: dict[tuple, dict[str, Any]] = {}
    for row in HourlyUsage.objects.filter(account=account).values(
        "hour", "model", "api_key", "team", *HourlyUsage.COUNTERS
    ):
        key = (row.pop("hour"), row.pop("model"), row.pop("api_key"), row.pop("team"))
        if row["requests"]:
            result[key] = row
    return result


@dataclass(frozen=True)
class Mismatch:
    group: tuple
    stored: dict[str, Any] | None
    recounted: dict[str, Any] | None


def verify(account: Account) -> list[Mismatch]:
    """Groups where the stored rollup differs from a recount of the records."""
    expected, actual = recount(account), stored(account)
    return [
        Mismatch(group, actual.get(group), expected.get(group))
        for group in sorted(set(expected) | set(actual), key=repr)
        if not _same(actual.get(group), expected.get(group))
    ]


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    # SQLite keeps decimals as floating point; compare money to a ten-millionth there.
    return all(
        abs(Decimal(a[c]) - Decimal(b[c])) < Decimal("1e-7") if c == "cost" else a[c] == b[c]
        for c in HourlyUsage.COUNTERS
    )


@transaction.atomic
def rebuild(account: Account) -> int:
    """Replace the account's rollup with a recount of its records; returns the group count."""
    HourlyUsage.objects.filter(account=account).delete()
    rows = [
        HourlyUsage(account=account, hour=hour, model=model, api_key_id=key, team=team, **values)
        for (hour, model, key, team), values in recount(account).items()
    ]
    HourlyUsage.objects.bulk_create(rows, batch_size=2000)
    return len(rows)
