"""What the model catalogue shows as seen working: per model, the optional parameters (and
streaming) its successful calls used, first and last seen. Noted by every ingestion batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db import connection, connections

from usage import parameters
from usage.models import AcceptedParameter, Account, ErrorCause
from usage.sql import Staged


def note_accepted_parameters(account: Account, rows: Sequence[dict[str, Any]], *, stage: Staged | None = None) -> None:
    """Remember, per model, the optional parameters (and streaming) its successful calls used,
    with the first and last time: what the model catalogue shows as seen working. One upsert
    per batch in the caller's transaction, widening the stored times (rows in one order, so
    concurrent batches take their locks in turn). With `stage` (the rows staged for insertion,
    usage.sql.staged), PostgreSQL groups them first: a few groups to read instead of every row."""
    groups = _staged_groups(stage) if stage is not None else _groups(rows)
    seen: dict[tuple[str, str], tuple[datetime, datetime]] = {}
    for model, mask, stream, first, last in groups:
        names = parameters.names_in(mask or 0)
        if stream and "stream" not in names:
            names = (*names, "stream")
        for name in names:
            known = seen.get((model, name))
            seen[(model, name)] = (first, last) if known is None else (min(known[0], first), max(known[1], last))
    if seen:
        _widen(account, seen)


Group = tuple[str, int | None, bool, datetime, datetime]  # model, parameter mask, streamed, first and last seen


def _groups(rows: Sequence[dict[str, Any]]) -> list[Group]:
    return [
        (row["model"], row.get("request_params"), bool(row.get("stream")), row["occurred_at"], row["occurred_at"])
        for row in rows
        if row["error_cause"] == ErrorCause.NONE
    ]


def _staged_groups(stage: Staged) -> list[Group]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT model, request_params, stream, min(occurred_at), max(occurred_at) FROM {stage.table} "  # noqa: S608
            "WHERE error_cause = %s AND (request_params IS NOT NULL OR stream) GROUP BY model, request_params, stream",
            [ErrorCause.NONE.value],
        )
        return cursor.fetchall()


def _widen(account: Account, seen: dict[tuple[str, str], tuple[datetime, datetime]]) -> None:
    connection = connections[AcceptedParameter.objects.db]
    qn, ops = connection.ops.quote_name, connection.ops
    table = qn(AcceptedParameter._meta.db_table)
    keys = sorted(seen)
    columns = ", ".join(qn(c) for c in ("account_id", "model", "parameter", "first_seen_at", "last_seen_at"))
    first_col, last_col = qn("first_seen_at"), qn("last_seen_at")
    if connection.vendor == "postgresql":
        # Five array parameters: one statement text whatever the batch, parsed once.
        least, greatest = "LEAST", "GREATEST"
        source = "SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[])"
        params: list[Any] = [
            [account.pk] * len(keys),
            [model for model, _ in keys],
            [name for _, name in keys],
            [seen[key][0] for key in keys],
            [seen[key][1] for key in keys],
        ]
    else:
        least, greatest = "MIN", "MAX"
        source = "VALUES " + ", ".join(["(%s, %s, %s, %s, %s)"] * len(keys))
        params = []
        for key in keys:
            first, last = seen[key]
            params += [account.pk, *key, ops.adapt_datetimefield_value(first), ops.adapt_datetimefield_value(last)]
    # (SQLite needs a WHERE in an INSERT … SELECT before ON CONFLICT: VALUES has none to confuse.)
    sql = (
        f"INSERT INTO {table} ({columns}) {source} "
        f"ON CONFLICT ({qn('account_id')}, {qn('model')}, {qn('parameter')}) DO UPDATE SET "
        f"{first_col} = {least}({table}.{first_col}, excluded.{first_col}), "
        f"{last_col} = {greatest}({table}.{last_col}, excluded.{last_col}) "
        f"WHERE {table}.{first_col} > excluded.{first_col} OR {table}.{last_col} < excluded.{last_col}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
