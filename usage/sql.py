"""Two bulk statements the ORM does not express: insert-or-skip returning what was
inserted, and add-to-counters upserts.

On PostgreSQL each column travels as one array parameter and `unnest` turns the
arrays back into rows: a statement with forty parameters instead of forty
thousand, which psycopg and the server parse in microseconds. SQLite, the
embedded default, gets a multi-row VALUES list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

Rows = Sequence[dict[str, Any]]


def _chunks(rows: Rows, size: int) -> Iterator[Rows]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


def _array_params(
    fields: Sequence[models.Field], names: Sequence[str], rows: Rows, connection: BaseDatabaseWrapper
) -> tuple[str, list[list[Any]]]:
    """`unnest(%s::type[], …)` and one list per column, for PostgreSQL."""
    casts, params = [], []
    for name, field in zip(names, fields, strict=True):
        db_type = field.db_type(connection) if not field.is_relation else "bigint"
        values = [row[name] for row in rows]
        if db_type == "jsonb":
            casts.append("%s::text[]::jsonb[]")
            values = [None if v is None else json.dumps(v) for v in values]
        else:
            casts.append(f"%s::{db_type}[]")
        params.append(values)
    return f"SELECT * FROM unnest({', '.join(casts)})", params  # noqa: S608  (casts come from model fields)


def _values_params(
    fields: Sequence[models.Field], names: Sequence[str], rows: Rows, connection: BaseDatabaseWrapper
) -> tuple[str, list[Any]]:
    """`VALUES (%s, …), (…)` and the flat parameters, for SQLite."""
    placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
    params = [
        field.get_db_prep_save(row[name], connection) for row in rows for name, field in zip(names, fields, strict=True)
    ]
    return f"VALUES {', '.join([placeholder] * len(rows))}", params


def _execute_in_chunks(
    model: type[models.Model], rows: Rows, tail: str, *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    connection = connections[DEFAULT_DB_ALIAS]
    names = list(rows[0].keys())
    fields = _columns(model, names)
    qn = connection.ops.quote_name
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)}) "
    postgres = connection.vendor == "postgresql"
    # SQLite binds at most 32,766 parameters per statement.
    size = 5000 if postgres else max(1, 32_000 // len(names))
    fetched: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for chunk in _chunks(rows, size):
            build = _array_params if postgres else _values_params
            source, params = build(fields, names, chunk, connection)
            cursor.execute(head + source + " " + tail, params)
            if fetch:
                fetched.extend(cursor.fetchall())
    return fetched


def insert_ignoring_conflicts(
    model: type[models.Model], rows: Rows, *, conflict: Sequence[str], returning: str
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns `returning` of the rows actually inserted."""
    if not rows:
        return []
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    conflict_sql = ", ".join(qn(f.column) for f in _columns(model, conflict))
    tail = f"ON CONFLICT ({conflict_sql}) DO NOTHING RETURNING {qn(_columns(model, [returning])[0].column)}"
    return [row[0] for row in _execute_in_chunks(model, rows, tail, fetch=True)]


def upsert_adding(model: type[models.Model], rows: Rows, *, conflict_sql: str, counters: Sequence[str]) -> None:
    """INSERT rows; where the group exists, add each counter to the stored value.

    One statement per chunk, so concurrent writers never lose an increment. The
    rows must be unique on the conflict target (PostgreSQL refuses to update a
    row twice in one statement).
    """
    if not rows:
        return
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    table = qn(model._meta.db_table)
    updates = ", ".join(
        f"{qn(f.column)} = {table}.{qn(f.column)} + excluded.{qn(f.column)}" for f in _columns(model, counters)
    )
    _execute_in_chunks(model, rows, f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}")
