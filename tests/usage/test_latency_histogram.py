"""The latency histogram beside the rollups: percentiles within 1% without reading the records,
kept exact by ingestion, verified and rebuilt with the rollups, and right across a time zone change."""

from __future__ import annotations

import importlib
import math
from datetime import UTC, date, datetime, timedelta

from django.apps import apps
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from usage import latency, rollups, selectors
from usage import sql as usage_sql
from usage.models import Account, LatencyHistogram, UsageRecord
from usage.periods import Period
from usage.pricing.repricing import rollup_row
from usage.schemas import RecordIn
from usage.services import create_account, record_usage

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)
# Latencies from one millisecond to a stalled ten-minute call, in a skewed spread.
LATENCIES = [1, 7, 45, 99, 100, 101, 180, 240, 240, 333, 512, 980, 1_250, 4_321, 18_000, 600_000]


def ingest(account: Account, latencies: list[int], *, model: str = "gpt-4o", prefix: str = "r") -> None:
    records = [
        RecordIn(
            request_id=f"{prefix}{i}",
            occurred_at=NOON + timedelta(seconds=i),
            model=model,
            usage={"prompt_tokens": 10, "completion_tokens": 1},
            latency_ms=ms,
        )
        for i, ms in enumerate(latencies)
    ]
    record_usage(account, list(enumerate(records)), source="api")


def nearest_rank(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[max(math.ceil(fraction * len(ordered)), 1) - 1]


@given(st.integers(min_value=1, max_value=2**31 - 1))
def test_every_latency_is_read_back_within_one_percent(latency_ms: int) -> None:
    read_back = latency.value_of(latency.bucket_of(latency_ms))

    assert abs(read_back - latency_ms) <= latency_ms * latency.RELATIVE_ACCURACY


def test_latencies_below_a_hundred_milliseconds_are_kept_exactly() -> None:
    assert [latency.value_of(latency.bucket_of(ms)) for ms in range(100)] == list(range(100))


def test_buckets_grow_with_the_latency_so_order_is_kept() -> None:
    buckets = [latency.bucket_of(ms) for ms in range(0, 50_000)]

    assert buckets == sorted(buckets)


def test_a_percentile_of_nothing_is_unknown_not_zero() -> None:
    assert latency.percentile([], 0.5) is None
    assert latency.percentile([(latency.bucket_of(250), 0)], 0.95) is None


def test_the_card_reads_the_nearest_rank_percentiles_of_the_records_within_one_percent(db) -> None:
    account = create_account(name="Acme", slug="acme", currency="USD")
    ingest(account, LATENCIES)

    found = selectors.model_latency(account=account, period=Period("custom", DAY, DAY), model="gpt-4o")

    assert found.samples == len(LATENCIES)
    for shown, fraction in ((found.p50_ms, 0.5), (found.p95_ms, 0.95)):
        exact = nearest_rank(LATENCIES, fraction)
        assert shown is not None and abs(shown - exact) <= exact * latency.RELATIVE_ACCURACY


def test_a_large_batch_files_every_latency_where_bucket_of_does_and_sums_like_a_recount(db) -> None:
    # From usage.sql.COPY_FROM_ROWS rows on, PostgreSQL sums a batch's rollups and histogram
    # from the staged rows: every bucket bound and its neighbours must land where Python files them.
    account = create_account(name="Acme", slug="acme", currency="USD")
    bounds = [b for b in latency._BOUNDS if b <= 2**31 - 1][:: max(1, len(latency._BOUNDS) // 150)]
    latencies = sorted({max(ms, 0) for b in (0, 1, 99, 100, 101, *bounds) for ms in (b - 1, b, b + 1)})
    latencies = [ms for ms in latencies if ms <= 86_400_000]
    assert len(latencies) >= usage_sql.COPY_FROM_ROWS

    ingest(account, latencies)

    assert rollups.verify(account) == []
    stored = dict(LatencyHistogram.objects.filter(account=account).values_list("bucket", "requests"))
    expected: dict[int, int] = {}
    for ms in latencies:
        expected[latency.bucket_of(ms)] = expected.get(latency.bucket_of(ms), 0) + 1
    assert stored == expected


def test_ingestion_keeps_the_histogram_equal_to_a_recount_and_a_tampered_bucket_is_found(db) -> None:
    account = create_account(name="Acme", slug="acme", currency="USD")
    ingest(account, LATENCIES)
    ingest(account, LATENCIES)  # a replay: nothing counted twice
    ingest(account, [240, 240], model="gpt-4o-mini", prefix="mini")

    assert rollups.verify(account) == []
    assert sum(LatencyHistogram.objects.filter(account=account).values_list("requests", flat=True)) == 18

    LatencyHistogram.objects.filter(account=account, bucket=latency.bucket_of(240), model="gpt-4o").update(requests=5)

    mismatches = rollups.verify(account)
    assert [m.group for m in mismatches] == [("latency", "gpt-4o", DAY, latency.bucket_of(240))]
    assert (mismatches[0].stored, mismatches[0].recounted) == ({"requests": 5}, {"requests": 2})

    rollups.rebuild(account)

    assert rollups.verify(account) == []


def test_after_a_time_zone_change_the_card_reads_the_records_until_a_rebuild(db) -> None:
    account = create_account(name="Acme", slug="acme", currency="USD")  # days in UTC
    ingest(account, LATENCIES)
    late_evening = [800, 900]  # 23:30 UTC on the 20th: the 21st in Shanghai
    records = [
        RecordIn(request_id=f"late{i}", occurred_at=NOON + timedelta(hours=11, minutes=30), model="gpt-4o",
                 usage={"prompt_tokens": 1, "completion_tokens": 1}, latency_ms=ms)
        for i, ms in enumerate(late_evening)
    ]  # fmt: skip
    record_usage(account, list(enumerate(records)), source="api")
    the_21st = Period("custom", DAY + timedelta(days=1), DAY + timedelta(days=1))

    with override_settings(DASHBOARD_TIME_ZONE="Asia/Shanghai"):
        account.refresh_from_db()
        before = selectors.model_latency(account=account, period=the_21st, model="gpt-4o")
        rollups.rebuild(account)
        account.refresh_from_db()
        after = selectors.model_latency(account=account, period=the_21st, model="gpt-4o")

    # Noon UTC is 20:00 in Shanghai, so the 21st there holds only the late calls, either way.
    assert (before.samples, before.p50_ms) == (2, latency.value_of(latency.bucket_of(800)))
    assert before == after


def test_the_migration_fills_the_histogram_of_records_stored_before_it(db) -> None:
    account = create_account(name="Acme", slug="acme", currency="USD")
    ingest(account, LATENCIES)
    LatencyHistogram.objects.all().delete()
    migration = importlib.import_module("usage.migrations.0080_latency_histogram")

    with override_settings(DASHBOARD_TIME_ZONE="UTC"):
        migration.fill_histogram(apps, None)

    assert rollups.verify(account) == []
    assert LatencyHistogram.objects.filter(account=account).count() == len({latency.bucket_of(ms) for ms in LATENCIES})


def test_moving_rows_writes_only_the_groups_that_change_and_keeps_the_rollups_exact(db) -> None:
    # A team move keeps each record's model, day and latency: the histogram must not be touched.
    account = create_account(name="Acme", slug="acme", currency="USD")
    ingest(account, LATENCIES)
    records = list(UsageRecord.objects.filter(account=account))
    before = [rollup_row(record) for record in records]
    UsageRecord.objects.filter(account=account).update(team="growth")
    after = [row | {"team": "growth"} for row in before]

    with CaptureQueriesContext(connection) as queries:
        rollups.move(before, after)

    assert rollups.verify(account) == []
    written = " ".join(query["sql"] for query in queries.captured_queries)
    assert "usage_latencyhistogram" not in written
    assert "usage_hourlyusage" in written and "usage_dailyusage" in written

    with CaptureQueriesContext(connection) as queries:
        rollups.move(after, after)  # nothing changes: nothing is written
    assert queries.captured_queries == []
