"""Reads of single requests: filtered, newest first, keyset-paginated at any depth.

Shared by the request log page, its CSV export and GET /api/v1/usage/records.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Q, QuerySet

from usage.models import Account, ErrorCause, TokensSource, UsageRecord

MAX_PAGE = 1000
MAX_ROW_ID = 2**63  # ids are 64-bit


class BadCursor(ValueError):
    pass


@dataclass(frozen=True)
class RecordFilters:
    start: datetime
    end: datetime
    model: str = ""
    api_key: str = ""  # a key's name
    team: str = ""
    error_cause: str = ""
    source: str = ""
    estimated: bool | None = None
    failed: bool | None = None  # True: only failed requests (any cause); False: only successes


def encode_cursor(record: UsageRecord) -> str:
    raw = f"{record.occurred_at.isoformat()}|{record.pk}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, pk = raw.rsplit("|", 1)
        when = datetime.fromisoformat(moment)
        if when.tzinfo is None:
            raise ValueError("naive time")
        # In UTC, as the database compares it: 0001-01-01T00:00+14:00 is before the calendar starts.
        when, row_id = when.astimezone(UTC), int(pk)
        if not 0 < row_id < MAX_ROW_ID:
            raise ValueError("no such row")
        return when, row_id
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc


def filtered(account: Account, filters: RecordFilters) -> QuerySet[UsageRecord]:
    rows = UsageRecord.objects.filter(account=account, occurred_at__gte=filters.start, occurred_at__lt=filters.end)
    if filters.model:
        rows = rows.filter(model=filters.model)
    if filters.api_key:
        rows = rows.filter(api_key__name=filters.api_key)
    if filters.team:
        rows = rows.filter(team=filters.team)
    if filters.error_cause:
        rows = rows.filter(error_cause=filters.error_cause)
    if filters.source:
        rows = rows.filter(source=filters.source)
    if filters.estimated is True:
        rows = rows.filter(tokens_source=TokensSource.ESTIMATED)
    elif filters.estimated is False:
        rows = rows.exclude(tokens_source=TokensSource.ESTIMATED)
    if filters.failed is True:
        rows = rows.exclude(error_cause=ErrorCause.NONE)
    elif filters.failed is False:
        rows = rows.filter(error_cause=ErrorCause.NONE)
    return rows.select_related("api_key").order_by("-occurred_at", "-id")


def page(
    account: Account, filters: RecordFilters, *, cursor: str | None = None, limit: int = 100
) -> tuple[list[UsageRecord], str | None]:
    """One page of records and the cursor of the next page (None on the last one)."""
    limit = max(1, min(limit, MAX_PAGE))
    rows = filtered(account, filters)
    if cursor:
        when, pk = decode_cursor(cursor)
        # The plain bound lets the (account, occurred_at) index start at the cursor; the OR alone
        # is not an index condition, and the database would filter every newer row first.
        rows = rows.filter(Q(occurred_at__lt=when) | Q(occurred_at=when, id__lt=pk), occurred_at__lte=when)
    found = list(rows[: limit + 1])
    if len(found) > limit:
        return found[:limit], encode_cursor(found[limit - 1])
    return found, None


def newer_page(
    account: Account, filters: RecordFilters, *, cursor: str, limit: int = 100
) -> tuple[list[UsageRecord], bool]:
    """The `limit` records just newer than `cursor`, newest first, and whether still newer ones
    exist (the "Newer" link of the request log: walks back up with the same keyset)."""
    limit = max(1, min(limit, MAX_PAGE))
    when, pk = decode_cursor(cursor)
    rows = (
        filtered(account, filters)
        .filter(Q(occurred_at__gt=when) | Q(occurred_at=when, id__gt=pk), occurred_at__gte=when)
        .order_by("occurred_at", "id")
    )
    found = list(rows[: limit + 1])
    return list(reversed(found[:limit])), len(found) > limit


def iterate(account: Account, filters: RecordFilters, *, chunk: int = 2000) -> Iterator[UsageRecord]:
    """Every matching record, newest first, in keyset chunks (flat memory for exports)."""
    cursor = None
    while True:
        rows, cursor = page(account, filters, cursor=cursor, limit=min(chunk, MAX_PAGE))
        yield from rows
        if cursor is None:
            return


@dataclass(frozen=True)
class Neighbours:
    """The requests just before and just after one request, among those sharing something."""

    older: UsageRecord | None
    newer: UsageRecord | None


def neighbours(record: UsageRecord, **same: object) -> Neighbours:
    """The previous and next request of the account with the same `same` values as `record`
    (for instance `model=record.model`), in the request log's order (time, then id); both
    walk an index from `record`, however many requests there are."""
    rows = UsageRecord.objects.filter(account_id=record.account_id, **same)
    when, pk = record.occurred_at, record.pk
    older = (
        rows.filter(Q(occurred_at__lt=when) | Q(occurred_at=when, id__lt=pk), occurred_at__lte=when)
        .order_by("-occurred_at", "-id")
        .only("id", "occurred_at", "request_id", "error_cause")
        .first()
    )
    newer = (
        rows.filter(Q(occurred_at__gt=when) | Q(occurred_at=when, id__gt=pk), occurred_at__gte=when)
        .order_by("occurred_at", "id")
        .only("id", "occurred_at", "request_id", "error_cause")
        .first()
    )
    return Neighbours(older=older, newer=newer)
