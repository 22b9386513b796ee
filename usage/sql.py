"""Bulk SQL the ORM does not express: insert-or-skip returning what was inserted,
add-to-counters upserts, a lookup of a batch's many values as one array (`AnyOf`), and
a probe per value of an account's unique key (`by_account_key`).

On PostgreSQL the rows are COPYed into a session-local staging table and moved with
one INSERT … SELECT … ON CONFLICT: COPY's text format is written by psycopg's C
code and parsed by the server's fastest input path, where arrays of parameters were
quoted element by element in Python (half of an import's time). Rows are inserted
in the order of the conflict target, so concurrent writers take row locks in the
same order. SQLite, the embedded default, gets multi-row VALUES lists.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import msgspec
from django.db import DEFAULT_DB_ALIAS, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import In
from django.db.models.sql.compiler import SQLCompiler

_json_encode = msgspec.json.Encoder().encode

Rows = Sequence[dict[str, Any]]
# From this many rows on, PostgreSQL gets COPY and a staging table (four short round trips);
# below it, one INSERT with an array per column (cheaper for the proxy's few records).
COPY_FROM_ROWS = 64


def _column(field: models.Field) -> str:
    assert field.column is not None  # a concrete field always has its column
    return field.column


def _columns(model: type[models.Model], names: Sequence[str]) -> list[models.Field]:
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]  # concrete fields only: names come from the model's own columns


def _staging_table(connection: BaseDatabaseWrapper, table: str, columns: Sequence[str]) -> str:
    """A temporary table with these columns of `table`, emptied at every commit.

    Its name names the columns, so callers that insert different columns get different
    tables. IF NOT EXISTS on every use (one short round trip) rather than remembering it:
    a rolled-back transaction takes a table created in it away.
    """
    digest = hashlib.sha1(",".join(columns).encode()).hexdigest()[:12]  # noqa: S324  (a name, not a secret)
    name = f"toki_staging_{table}_{digest}"[:63]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {qn(name)} ON COMMIT DELETE ROWS AS "  # noqa: S608
            f"SELECT {', '.join(qn(c) for c in columns)} FROM {qn(table)} WITH NO DATA"
        )
    return name


def _array_params(
    fields: Sequence[models.Field], names: Sequence[str], rows: Rows, connection: BaseDatabaseWrapper
) -> tuple[str, list[list[Any]]]:
    """`unnest(%s::type[], …)` and one list per column, for a few PostgreSQL rows."""
    casts, params = [], []
    for name, field in zip(names, fields, strict=True):
        db_type = field.db_type(connection) if not field.is_relation else "bigint"
        values = [row[name] for row in rows]
        if db_type == "jsonb":
            casts.append("%s::text[]::jsonb[]")
            values = [_json_text(v) for v in values]
        else:
            casts.append(f"%s::{db_type}[]")
        params.append(values)
    return f"SELECT * FROM unnest({', '.join(casts)})", params  # noqa: S608  (casts come from model fields)


def _json_text(value: Any) -> str | None:
    # jsonb columns take their JSON text (None stays SQL NULL, as the ORM stores it);
    # every other value psycopg writes itself, in C.
    return None if value is None else _json_encode(value).decode()


class AnyOf(In):
    """`In` whose values are one array parameter on PostgreSQL (`= ANY(%s)`), as a filter
    expression: `filter(AnyOf(F("request_id"), ids))`. Looking up a batch's thousands of
    request ids, it costs half what as many placeholders do (each compiled, bound and parsed).
    Elsewhere it is `In`."""

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, tuple[Any, ...]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        values = [value for value in self.rhs if value is not None]  # as In: NULL matches nothing
        return f"{lhs} = ANY(%s)", (*lhs_params, values)


def by_account_key(
    model: type[models.Model], account_id: int, key: str, values: Sequence[str], fields: Sequence[str]
) -> list[tuple[Any, ...]]:
    """`fields` (plain columns) of the rows of `model` whose unique (account, `key`) is
    (account_id, value), for each of `values`: one probe of that unique index per value.

    `filter(account=…, key__in=values)` is planned from the table's statistics, which say little
    of an account that was small when they were gathered: a new one, or one grown since
    (autovacuum analyzes a 10M-row table again only after a million changed rows). PostgreSQL
    then expects a handful of its rows, reads every one and filters: 40 ms for 1,000 request ids
    among an account's 240,000 (bench/README.md), and more as the account grows. A LATERAL
    subquery probes per value whatever the statistics say; its LIMIT keeps the planner from
    flattening it into a join it could plan the same way. SQLite probes its unique index for IN.
    """
    values = [value for value in values if value is not None]  # as In: NULL matches nothing
    if not values:
        return []
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        rows = model._default_manager.filter(**{"account_id": account_id, f"{key}__in": values})
        return list(rows.values_list(*fields))
    qn = connection.ops.quote_name
    columns = ", ".join(qn(_column(field)) for field in _columns(model, fields))
    account_column, key_column = (qn(_column(field)) for field in _columns(model, ("account", key)))
    sql = (
        f"SELECT found.* FROM unnest(%s::text[]) AS wanted(value) CROSS JOIN LATERAL ("  # noqa: S608  (names from the model)
        f"SELECT {columns} FROM {qn(model._meta.db_table)} WHERE {account_column} = %s "
        f"AND {key_column} = wanted.value LIMIT 1) AS found"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [values, account_id])
        return cursor.fetchall()


@dataclass(frozen=True)
class Staged:
    """Rows COPYed into a session-local staging table, for one or more statements of the
    caller's transaction to read (`staged`)."""

    table: str  # quoted
    columns: str  # the quoted column list, in the rows' order


def _copy_into_staging(model: type[models.Model], rows: Rows, fields: Sequence[models.Field]) -> Staged:
    connection = connections[DEFAULT_DB_ALIAS]
    qn = connection.ops.quote_name
    names = list(rows[0].keys())
    columns = [_column(f) for f in fields]
    json_at = [i for i, f in enumerate(fields) if f.get_internal_type() == "JSONField"]
    staging = qn(_staging_table(connection, model._meta.db_table, columns))
    column_sql = ", ".join(qn(c) for c in columns)
    values_of = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY {staging} ({column_sql}) FROM STDIN") as copy:
        write = copy.write_row
        if json_at:
            for row in rows:
                values = list(values_of(row))
                for i in json_at:
                    values[i] = _json_text(values[i])
                write(values)
        else:
            for row in rows:
                write(values_of(row))
    return Staged(staging, column_sql)


@contextlib.contextmanager
def staged(model: type[models.Model], rows: Rows) -> Iterator[Staged | None]:
    """On PostgreSQL, from COPY_FROM_ROWS rows on, the rows in a staging table for the
    statements inside the block (emptied after it); None elsewhere (nothing to read)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql" or len(rows) < COPY_FROM_ROWS:
        yield None
        return
    with transaction.atomic(using=connection.alias, savepoint=False):
        stage = _copy_into_staging(model, rows, _columns(model, list(rows[0].keys())))
        yield stage
        with connection.cursor() as cursor:
            # A later statement in the same transaction starts from an empty table.
            cursor.execute(f"DELETE FROM {stage.table}")  # noqa: S608  (names come from model metadata)


def _insert_from(
    model: type[models.Model], stage: Staged, tail: str, order_by: str, fetch: bool
) -> list[tuple[Any, ...]]:
    connection = connections[DEFAULT_DB_ALIAS]
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({stage.columns}) SELECT {stage.columns} FROM {stage.table} "  # noqa: S608
            f"ORDER BY {order_by} {tail}"
        )
        return cursor.fetchall() if fetch else []


def _postgres_execute(
    model: type[models.Model], rows: Rows, tail: str, order_by: str, fetch: bool
) -> list[tuple[Any, ...]]:
    """COPY the rows into a staging table, then INSERT … SELECT from it: one round trip of
    data in COPY's text format, which psycopg writes in C, instead of arrays of parameters."""
    with staged(model, rows) as stage:
        assert stage is not None  # the caller checked: PostgreSQL, enough rows
        return _insert_from(model, stage, tail, order_by, fetch)


def _values_params(
    fields: Sequence[models.Field], names: Sequence[str], rows: Rows, connection: BaseDatabaseWrapper
) -> tuple[str, list[Any]]:
    """`VALUES (%s, …), (…)` and the flat parameters, for SQLite."""
    placeholder = "(" + ", ".join(["%s"] * len(names)) + ")"
    params = [
        field.get_db_prep_save(row[name], connection) for row in rows for name, field in zip(names, fields, strict=True)
    ]
    return f"VALUES {', '.join([placeholder] * len(rows))}", params


def _sqlite_chunk_sizes(total: int, largest: int) -> Iterator[int]:
    """Full chunks, then the rest as powers of two: a few distinct statement shapes per
    column set, so SQLite's statement cache does not fill with one shape per batch size."""
    while total >= largest:
        yield largest
        total -= largest
    bit = 1 << max(total.bit_length() - 1, 0)
    while total:
        if total >= bit:
            yield bit
            total -= bit
        bit >>= 1


def _execute(
    model: type[models.Model], rows: Rows, tail: str, *, order_by: str, fetch: bool = False
) -> list[tuple[Any, ...]]:
    connection = connections[DEFAULT_DB_ALIAS]
    names = list(rows[0].keys())
    fields = _columns(model, names)
    qn = connection.ops.quote_name
    if connection.vendor == "postgresql" and len(rows) >= COPY_FROM_ROWS:
        return _postgres_execute(model, rows, tail, order_by, fetch)
    if connection.vendor == "postgresql":  # a few rows: one statement, no staging table
        source, array_params = _array_params(fields, names, rows, connection)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(_column(f)) for f in fields)}) {source} {tail}",
                array_params,
            )
            return cursor.fetchall() if fetch else []
    head = f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(_column(f)) for f in fields)}) "
    # SQLite binds at most 32,766 parameters per statement.
    largest = max(1, 32_000 // len(names))
    fetched: list[tuple[Any, ...]] = []
    start = 0
    with connection.cursor() as cursor:
        for size in _sqlite_chunk_sizes(len(rows), largest):
            source, params = _values_params(fields, names, rows[start : start + size], connection)
            start += size
            cursor.execute(head + source + " " + tail, params)
            if fetch:
                fetched.extend(cursor.fetchall())
    return fetched


def insert_ignoring_conflicts(
    model: type[models.Model], rows: Rows, *, conflict: Sequence[str], returning: str | Sequence[str]
) -> list[Any]:
    """INSERT … ON CONFLICT DO NOTHING; returns `returning` of the rows actually inserted
    (a value per row for one field name, a tuple per row for several)."""
    if not rows:
        return []
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    conflict_sql = ", ".join(qn(_column(f)) for f in _columns(model, conflict))
    names = [returning] if isinstance(returning, str) else list(returning)
    returning_sql = ", ".join(qn(_column(f)) for f in _columns(model, names))
    tail = f"ON CONFLICT ({conflict_sql}) DO NOTHING RETURNING {returning_sql}"
    fetched = _execute(model, rows, tail, order_by=conflict_sql, fetch=True)
    return [row[0] for row in fetched] if isinstance(returning, str) else [tuple(row) for row in fetched]


def insert_returning(
    model: type[models.Model], rows: Rows, *, returning: Sequence[str], stage: Staged | None = None
) -> list[tuple[Any, ...]]:
    """A plain INSERT of rows known to be new (their keys registered first, see
    usage.models.identity.RegisteredRequest); returns `returning` of each row. With `stage`
    (`staged` of the same rows), from the staging table the caller reads again afterwards."""
    if not rows:
        return []
    qn = connections[DEFAULT_DB_ALIAS].ops.quote_name
    names = list(returning)
    returning_sql = ", ".join(qn(_column(f)) for f in _columns(model, names))
    order_by = ", ".join(qn(_column(f)) for f in _columns(model, names[:1]))
    if stage is not None:
        return [tuple(row) for row in _insert_from(model, stage, f"RETURNING {returning_sql}", order_by, fetch=True)]
    return [tuple(row) for row in _execute(model, rows, f"RETURNING {returning_sql}", order_by=order_by, fetch=True)]


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
        f"{qn(_column(f))} = {table}.{qn(_column(f))} + excluded.{qn(_column(f))}" for f in _columns(model, counters)
    )
    _execute(model, rows, f"ON CONFLICT ({conflict_sql}) DO UPDATE SET {updates}", order_by=conflict_sql)
