"""One upstream call, one record, whatever the source.

**The same call.** The provider gives every call ids of its own: the response's `id`
(`chatcmpl-…`, `resp_…`) and a request id (the `X-Oneapi-Request-Id` header a New API
console answers with and logs the call under, or `x-request-id`). Two records that carry
the same such id and come from different sources (proxy, API, import, sync) are the same
call. Within one source a call is known by its own `request_id`, so two records of one
source are never merged: a replay shares its `request_id` and stays a duplicate as before.

**Counted once.** The record that arrives first counts the call: it holds the call's
`CallKey`s. A later record of the same call from another source becomes a
`CallSighting` linked to it ("seen by"), which no rollup, allocation or total counts; its
own `request_id` stays that source's idempotency key, so its replays are duplicates too.
Two sources racing with the same call both insert, then race for the unique CallKey row:
the loser's record is taken back inside its own transaction and becomes the sighting.

`record_usage` (usage.services) calls `plan` before inserting a batch, `claim` after, and
`link` last, all in its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count, F

from usage.models import Account, CallKey, CallSighting, RegisteredRequest, UsageRecord
from usage.sql import AnyOf, by_account_key, insert_ignoring_conflicts

RESPONSE_KEY = "response:"
REQUEST_KEY = "request:"

Row = dict[str, Any]


def keys_of(row: Row) -> list[str]:
    """The CallKeys of a record row: its response id and its upstream request id, when it has them."""
    keys = []
    if row.get("response_id"):
        keys.append(RESPONSE_KEY + row["response_id"])
    if row.get("upstream_request_id"):
        keys.append(REQUEST_KEY + row["upstream_request_id"])
    return keys


@dataclass
class Plan:
    """A batch's rows sorted out before insertion."""

    records: list[Row]  # to insert as records (replays among them are skipped by the insert)
    seen: list[tuple[Row, int]] = field(default_factory=list)  # (row, id of the record that counts the call)
    sighted: dict[str, str] = field(default_factory=dict)  # request_id → content hash, of stored sightings


def plan(account: Account, rows: Sequence[Row], source: str) -> Plan:
    """Which rows are calls another source already recorded, and which are new records. A row
    needs only `request_id` and the provider's ids (`keys_of`): a record is placed before it
    is built (usage.services.record_usage)."""
    sighted: dict[str, str] = {}
    # A sighting's request_id is its own source's: only that source can replay it. Most
    # batches come from a source without any, and skip the lookup.
    if CallSighting.objects.filter(account=account, source=source).exists():
        request_ids = [r["request_id"] for r in rows]
        fields = ("request_id", "content_hash")
        sighted = dict(by_account_key(CallSighting, account.pk, "request_id", request_ids, fields))
    rows = [r for r in rows if r["request_id"] not in sighted]
    keyed = [(row, keys) for row in rows if (keys := keys_of(row))]
    if not keyed:
        return Plan(list(rows), sighted=sighted)
    holders = _holders(account, {key for _, keys in keyed for key in keys})
    counted_by: dict[str, int] = {}
    for row, keys in keyed:
        for key in keys:
            holder = holders.get(key)
            if holder is not None and holder[1] != row["request_id"] and holder[2] != source:
                counted_by[row["request_id"]] = holder[0]
                break
    if counted_by:
        # A request_id stored as a record stays that record's (a replay or a conflict).
        registered = by_account_key(RegisteredRequest, account.pk, "request_id", list(counted_by), ("request_id",))
        for (request_id,) in registered:
            del counted_by[request_id]
    return Plan(
        records=[r for r in rows if r["request_id"] not in counted_by],
        seen=[(r, counted_by[r["request_id"]]) for r in rows if r["request_id"] in counted_by],
        sighted=sighted,
    )


def _holders(account: Account, keys: set[str]) -> dict[str, tuple[int, str, str]]:
    """key → (record id, request_id, source) of the record counting the call it names."""
    held = by_account_key(CallKey, account.pk, "key", list(keys), ("key", "record_id", "occurred_at"))
    if not held:
        return {}
    # The keys carry their records' moments: only the partitions of those months are read.
    moments = [moment for _, _, moment in held]
    records = UsageRecord.objects.filter(
        AnyOf(F("id"), list({record_id for _, record_id, _ in held})), occurred_at__range=(min(moments), max(moments))
    )
    found = {pk: (request_id, source) for pk, request_id, source in records.values_list("id", "request_id", "source")}
    return {key: (record_id, *found[record_id]) for key, record_id, _ in held if record_id in found}


def claim(
    account: Account, inserted: Sequence[Row], ids: dict[str, int], source: str
) -> tuple[list[Row], list[tuple[Row, int]]]:
    """Register the keys of newly inserted rows. Returns the rows that count their call and,
    for rows whose call another source claimed first (concurrently), (row, that record's id):
    their records are deleted again, to be linked as sightings."""
    wanted: dict[str, Row] = {}
    for row in inserted:
        for key in keys_of(row):
            wanted.setdefault(key, row)  # a key twice in one batch (one source): the first row holds it
    if not wanted:
        return list(inserted), []
    claimed = insert_ignoring_conflicts(
        CallKey,
        [
            {"account": account.pk, "key": key, "record": ids[row["request_id"]], "occurred_at": row["occurred_at"]}
            for key, row in wanted.items()
        ],
        conflict=("account", "key"),
        returning="key",
    )
    lost = set(wanted) - set(claimed)
    if not lost:
        return list(inserted), []
    holders = _holders(account, lost)
    taken: dict[str, int] = {}
    for key in lost:
        row, holder = wanted[key], holders.get(key)
        if holder is not None and holder[2] != source and holder[0] != ids[row["request_id"]]:
            taken.setdefault(row["request_id"], holder[0])
    if taken:
        UsageRecord.objects.filter(pk__in=[ids[request_id] for request_id in taken]).delete()
        # Their request ids become the sightings' (link), which keep them from now on.
        RegisteredRequest.objects.filter(account=account, request_id__in=list(taken)).delete()
    kept = [row for row in inserted if row["request_id"] not in taken]
    return kept, [(row, taken[row["request_id"]]) for row in inserted if row["request_id"] in taken]


def link(account: Account, seen: Sequence[tuple[Row, int]], source: str) -> set[str]:
    """Store the sightings; returns the request_ids stored (the others were already stored)."""
    if not seen:
        return set()
    rows = [
        {
            "account": account.pk,
            "record": record_id,
            "request_id": row["request_id"],
            "source": source,
            "occurred_at": row["occurred_at"],
            "prompt_tokens": row["prompt_tokens"],
            "completion_tokens": row["completion_tokens"],
            "cost": row["cost"],
            "content_hash": row["content_hash"],
            "created_at": row["created_at"],
        }
        for row, record_id in seen
    ]
    stored = insert_ignoring_conflicts(CallSighting, rows, conflict=("account", "request_id"), returning="request_id")
    return set(stored)


# --- Reads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceOverlap:
    """Calls two sources both brought in a window: `counted_by` counts them, `seen_by` saw them too."""

    counted_by: str
    seen_by: str
    calls: int


def source_overlap(account: Account, *, start: datetime, end: datetime) -> list[SourceOverlap]:
    """Per pair of sources, how many calls of (start, end] both carried (each counted once)."""
    rows = (
        CallSighting.objects.filter(account=account, occurred_at__gt=start, occurred_at__lte=end)
        .values("record__source", "source")
        .annotate(calls=Count("id"))
        .order_by("-calls", "record__source", "source")
    )
    return [SourceOverlap(r["record__source"], r["source"], r["calls"]) for r in rows]


def sightings_of(record: UsageRecord) -> list[CallSighting]:
    """The other sources that brought this record's call, first seen first."""
    return list(record.sightings.order_by("created_at", "pk"))
