"""A batch's ids are looked up with one probe each, however stale PostgreSQL's statistics are.

PostgreSQL plans `account = … AND request_id = ANY(…)` from the table's statistics. For an
account that held no rows when they were gathered (a new one, or one that grew since:
autovacuum analyzes a 10M-row table again only after a million changes) it expects a handful
of rows, reads all of the account's and filters them. At 10M records a replay of 1,000
records read 240,000 registry rows per batch, and more as the account grew (bench/README.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.usage.test_sql_bulk import raw_record, store
from usage.models import RegisteredRequest
from usage.services import create_account

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="a choice of PostgreSQL's planner; SQLite probes its unique index for IN"
)

OTHER_ACCOUNT_ROWS = 20_000
STORED = 3_000


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def rows_read(queries: CaptureQueriesContext, table: str) -> int:
    """Rows the captured SELECTs read from `table`: those they kept and those their filters dropped."""
    read = 0
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            if query["sql"].startswith("SELECT") and table in query["sql"]:
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {query['sql']}")
                plan = cursor.fetchone()[0]
                plan = json.loads(plan) if isinstance(plan, str) else plan
                for node in _nodes(plan[0]["Plan"]):
                    if node.get("Relation Name") == table:
                        kept, dropped = node["Actual Rows"], node.get("Rows Removed by Filter", 0)
                        read += (kept + dropped) * node["Actual Loops"]
    return read


@pytest.mark.django_db
def test_a_replay_reads_only_the_registry_rows_of_its_own_request_ids_when_the_statistics_predate_its_account():
    other, grown = create_account(name="Other", slug="other"), create_account(name="Grown", slug="grown")
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    RegisteredRequest.objects.bulk_create(
        RegisteredRequest(account=other, request_id=f"other-{i}", occurred_at=moment, content_hash="0" * 64)
        for i in range(OTHER_ACCOUNT_ROWS)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_registeredrequest")  # statistics from before `grown` had a record
    raws = [raw_record(i) for i in range(STORED)]
    assert store(grown, raws).accepted == STORED
    replayed = raws[::100]

    with CaptureQueriesContext(connection) as queries:
        result = store(grown, replayed)

    assert result.duplicates == len(replayed) and not result.conflicts
    assert rows_read(queries, "usage_registeredrequest") == len(replayed)
