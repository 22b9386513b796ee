"""PostgreSQL's planner statistics kept up with the accounts that ingest.

The planner estimates how many of a table's rows an account has from statistics sampled at
the last ANALYZE. An account whose rows arrived since then looks like an account of a handful
of rows, and gets plans made for a handful: at 10M records the request log of a 1M-record
account that no ANALYZE had seen sorted its whole month to show 50 rows (1.4 s instead of
60 ms, bench/README.md). Autovacuum analyzes a table again only once a tenth of it has
changed, and never analyzes the partitioned records table itself, only its partitions.

So ingestion asks for an ANALYZE of the tables the pages read by account, debounced: seconds
after a batch, then at most once every STATISTICS_REFRESH_SECONDS per database, however many
batches arrive. ANALYZE reads a fixed sample per table (30,000 rows), about 4 s for all of
them at 10M records.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

from toki_dashboard import background
from usage.models import DailyUsage, HourlyUsage, LatencyHistogram, RegisteredRequest, UsageRecord

# The records (all their partitions, and the partitioned table's own statistics), the rollups
# and the histogram the pages read, and the registry the ingestion reads.
ANALYZED = tuple(
    model._meta.db_table for model in (UsageRecord, HourlyUsage, DailyUsage, LatencyHistogram, RegisteredRequest)
)


# The first refresh of a window waits this long, so that it sees the burst that asked for it.
FIRST_REFRESH_SECONDS = 10.0


def schedule_refresh() -> None:
    """Refresh the statistics soon after the current transaction commits (PostgreSQL only):
    the first request of every STATISTICS_REFRESH_SECONDS does, the others share it."""
    if connection.vendor != "postgresql":
        return
    window = settings.STATISTICS_REFRESH_SECONDS
    key = f"usage:statistics:{connection.settings_dict['NAME']}"

    def enqueue() -> None:
        if cache.add(key, 1, timeout=max(1, int(window))):
            background.enqueue("usage.tasks.refresh_statistics", countdown=min(window, FIRST_REFRESH_SECONDS))

    transaction.on_commit(enqueue, robust=True)


def refresh() -> list[str]:
    """ANALYZE the tables of ANALYZED; returns their names (none on SQLite, whose planner
    needs no per-account statistics to use the indexes)."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        for table in ANALYZED:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(table)}")
    return list(ANALYZED)
