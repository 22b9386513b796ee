"""Monthly partitions of the usage records on PostgreSQL, and raw-record retention.

On PostgreSQL `usage_usagerecord` is partitioned by range of `occurred_at`, one partition per
UTC month (`usage_usagerecord_p2026_12` holds December 2026) and a default partition
(`usage_usagerecord_default`) for any moment no month partition covers. SQLite keeps one
table; every function here is then a no-op, or deletes rows where PostgreSQL drops tables.

- `ensure_partitions` creates the partitions of this month and the next `ahead` months, and
  moves any month the default partition holds rows of into a partition of its own.
- `apply_retention` forgets the request-level detail of months older than
  RAW_RETENTION_MONTHS: a month partition is dropped in one statement, rows of the default
  partition (or of SQLite's table) are deleted in batches. The rollups, the paid rollup,
  allocations, budgets and the registry of request ids are kept, so every total stays exact;
  `RawRetention.kept_from` records from when on raw records are kept.

Both run daily from Celery beat (`usage.tasks.maintain_usage_partitions`) and from
`manage.py maintain_usage_records`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from usage.models import RawRetention, UsageRecord

logger = logging.getLogger(__name__)

PARENT = UsageRecord._meta.db_table
DEFAULT_PARTITION = f"{PARENT}_default"
DELETE_BATCH = 5000
_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_months(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_p{month:%Y_%m}"


def is_partitioned() -> bool:
    """Whether the records are a partitioned table (PostgreSQL after the migration)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [PARENT])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


@dataclass(frozen=True)
class Partition:
    name: str
    start: datetime | None  # None for the default partition
    end: datetime | None


def partitions() -> list[Partition]:
    """The record partitions, months in order, the default partition last."""
    if not is_partitioned():
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [PARENT],
        )
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        match = _BOUND.search(bound)
        if match is None:
            found.append(Partition(name, None, None))
        else:
            start, end = (datetime.fromisoformat(value).astimezone(UTC) for value in match.groups())
            found.append(Partition(name, start, end))
    return sorted(found, key=lambda p: (p.start is None, p.start or datetime.min.replace(tzinfo=UTC)))


def _default_months(since: datetime | None = None) -> list[datetime]:
    """Months the default partition holds rows of."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', occurred_at AT TIME ZONE 'UTC') FROM {DEFAULT_PARTITION}"  # noqa: S608
        )
        months = sorted(row[0].replace(tzinfo=UTC) for row in cursor.fetchall())
    return [m for m in months if since is None or m >= since]


def create_partition(month: datetime) -> bool:
    """The partition of `month`, created unless it exists; rows the default partition holds for
    that month move into it in the same transaction. Returns True when it was created."""
    name, start, end = partition_name(month), month, add_months(month, 1)
    qn = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        if cursor.fetchone()[0]:
            return False
        # No insert may land in the default partition for this month while its rows move.
        cursor.execute(f"LOCK TABLE {qn(DEFAULT_PARTITION)} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {qn(DEFAULT_PARTITION)} WHERE occurred_at >= %s AND occurred_at < %s)",  # noqa: S608
            [start, end],
        )
        if not cursor.fetchone()[0]:
            cursor.execute(
                f"CREATE TABLE {qn(name)} PARTITION OF {qn(PARENT)} FOR VALUES FROM (%s) TO (%s)", [start, end]
            )
            return True
        cursor.execute(f"CREATE TABLE {qn(name)} (LIKE {qn(PARENT)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(
            f"WITH moved AS (DELETE FROM {qn(DEFAULT_PARTITION)} WHERE occurred_at >= %s AND occurred_at < %s "  # noqa: S608
            f"RETURNING *) INSERT INTO {qn(name)} SELECT * FROM moved",
            [start, end],
        )
        cursor.execute(
            f"ALTER TABLE {qn(PARENT)} ATTACH PARTITION {qn(name)} FOR VALUES FROM (%s) TO (%s)", [start, end]
        )
    return True


@dataclass
class Maintenance:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    kept_from: datetime | None = None


def ensure_partitions(*, ahead: int | None = None, now: datetime | None = None) -> list[str]:
    """Partitions of this month and the next `ahead` months (USAGE_PARTITIONS_AHEAD), and of
    every month (within retention) the default partition holds rows of. Returns those created."""
    if not is_partitioned():
        return []
    ahead = settings.USAGE_PARTITIONS_AHEAD if ahead is None else ahead
    current = month_start(now or timezone.now())
    months = {add_months(current, n) for n in range(ahead + 1)}
    months.update(_default_months(since=RawRetention.kept_from_now()))
    created = [partition_name(month) for month in sorted(months) if create_partition(month)]
    for name in created:
        logger.info("usage records: partition %s created", name)
    return created


def retention_cutoff(now: datetime | None = None, months: int | None = None) -> datetime | None:
    """From when on raw records are kept under RAW_RETENTION_MONTHS: the start of the month
    that many months before this one (None: keep everything). With 3 in December, September
    on is kept: at least three whole months and the current one."""
    months = settings.RAW_RETENTION_MONTHS if months is None else months
    if months is None:
        return None
    return add_months(month_start(now or timezone.now()), -months)


def apply_retention(*, now: datetime | None = None, months: int | None = None) -> Maintenance:
    """Forget the raw records before the retention cutoff; the cutoff is recorded first, so
    that nothing recomputes from the months being dropped. Rollups and the rest stay."""
    result = Maintenance()
    cutoff = retention_cutoff(now, months)
    if cutoff is None:
        return result
    result.kept_from = RawRetention.advance(cutoff)
    cutoff = result.kept_from
    if is_partitioned():
        qn = connection.ops.quote_name
        for partition in partitions():
            if partition.end is not None and partition.end <= cutoff:
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE {qn(partition.name)}")
                result.dropped.append(partition.name)
                logger.info("usage records: partition %s dropped (RAW_RETENTION_MONTHS)", partition.name)
        result.deleted_rows = _delete_before(DEFAULT_PARTITION, cutoff)
    else:
        result.deleted_rows = _delete_before(PARENT, cutoff)
    return result


def _delete_before(table: str, cutoff: datetime) -> int:
    """Delete rows of `table` before `cutoff`, a batch per transaction."""
    qn = connection.ops.quote_name
    deleted = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {qn(table)} WHERE id IN (SELECT id FROM {qn(table)} "  # noqa: S608
                f"WHERE occurred_at < %s LIMIT {DELETE_BATCH})",
                [cutoff],
            )
            count = cursor.rowcount
        deleted += count
        if count < DELETE_BATCH:
            return deleted


def maintain(*, now: datetime | None = None) -> Maintenance:
    """What the daily task does: retention first (so no partition is created for a month
    about to be forgotten), then the partitions ahead."""
    result = apply_retention(now=now)
    result.created = ensure_partitions(now=now)
    return result
