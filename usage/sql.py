"""Two bulk statements the ORM does not express: insert-or-skip returning what was
inserted, and add-to-counters upserts. Both run unchanged on PostgreSQL and SQLite."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connection, models


def _chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _rows_per_statement(n_columns: int) -> int:
    # SQLite allows 32,766 bound parameters, PostgreSQL 65,535.
    limit = 32_000 if connection.vendor == "sqlite" else 65_000
    return max(1, limit // n_columns)


def _prepared(model: type[models.Model], columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Any]:
    fields = [model._meta.get_field(c) for c in columns]
    params: list[Any] = []
    for row in rows:
        for name, field in zip(columns, fields, strict=True):
            params.append(field.get_db_prep_save(row[name], connection))
    return params


def insert_ignoring_conflicts(
    model: type[models.Model], rows: Sequence[dict[str, Any]], *, conflict: Sequence[str], returning: str
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns `returning` of the rows actually inserted."""
    if not rows:
        return []
    columns = list(rows[0].keys())
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    column_sql = ", ".join(qn(model._meta.get_field(c).column) for c in columns)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    conflict_sql = ", ".join(qn(model._meta.get_field(c).column) for c in conflict)
    returned: list[Any] = []
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, _rows_per_statement(len(columns))):
            sql = (
                f"INSERT INTO {table} ({column_sql}) VALUES {', '.join([placeholder] * len(chunk))} "  # noqa: S608
                f"ON CONFLICT ({conflict_sql}) DO NOTHING RETURNING {qn(model._meta.get_field(returning).column)}"
            )
            cursor.execute(sql, _prepared(model, columns, chunk))
            returned.extend(r[0] for r in cursor.fetchall())
    return returned


def upsert_adding(
    model: type[models.Model],
    rows: Sequence[dict[str, Any]],
    *,
    conflict_sql: str,
    counters: Sequence[str],
) -> None:
    """INSERT rows; where the group exists, add each counter to the stored value.

    One statement per chunk, so concurrent writers never lose an increment.
    """
    if not rows:
        return
    columns = list(rows[0].keys())
    qn = connection.ops.quote_name
    table = qn(model._meta.db_table)
    column_sql = ", ".join(qn(model._meta.get_field(c).column) for c in columns)
    placeholder = "(" + ", ".join(["%s"] * len(columns)) + ")"
    updates = ", ".join(
        f"{qn(c)} = {table}.{qn(c)} + excluded.{qn(c)}" for c in (model._meta.get_field(n).column for n in counters)
    )
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, _rows_per_statement(len(columns))):
            sql = (
                f"INSERT INTO {table} ({column_sql}) VALUES {', '.join([placeholder] * len(chunk))} "  # noqa: S608
                f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}"
            )
            cursor.execute(sql, _prepared(model, columns, chunk))
