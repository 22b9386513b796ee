"""Replays and parallel overlapping batches never count a request twice (run on PostgreSQL in CI)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from usage import rollups
from usage.models import CallSighting, UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage

START = datetime(2026, 11, 1, tzinfo=UTC)


def make_records(ids: range) -> list[dict]:
    rng = random.Random(7)
    return [
        {
            "request_id": f"req-{i}",
            "occurred_at": (START + timedelta(minutes=13 * i)).isoformat(),
            "model": rng.choice(["gpt-4o", "gpt-4o-mini", "deepseek-chat"]),
            "api_key": rng.choice(["search", "support", "batch"]),
            "usage": {"prompt_tokens": 100 + i, "completion_tokens": 10 + i % 50},
            "latency_ms": 200 + i % 300,
        }
        for i in ids
    ]


def ingest(account, raw: list[dict]) -> None:
    valid, rejected = validate_records(raw)
    assert not rejected
    try:
        record_usage(account, valid, source="api")
    finally:
        connection.close()  # each thread's own connection


def test_a_batch_replayed_three_times_is_stored_once(transactional_db, account):
    batch = make_records(range(500))
    for _ in range(3):
        ingest(account, batch)

    assert UsageRecord.objects.filter(account=account).count() == 500
    assert rollups.verify(account) == []


@pytest.mark.parametrize("workers", [4])
def test_overlapping_batches_from_parallel_threads_leave_one_record_per_request(transactional_db, account, workers):
    # Eight batches of 400 that overlap by half (1,800 distinct requests), each sent twice, shuffled.
    batches = [make_records(range(start, start + 400)) for start in range(0, 1600, 200)] * 2
    random.Random(3).shuffle(batches)
    distinct = 1800

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda batch: ingest(account, batch), batches))

    assert UsageRecord.objects.filter(account=account).count() == distinct
    assert rollups.verify(account) == []
    totals = rollups.stored(account)
    assert sum(group["requests"] for group in totals.values()) == distinct
    assert sum(group["prompt_tokens"] for group in totals.values()) == sum(100 + i for i in range(distinct))


def test_two_sources_racing_with_the_same_calls_count_each_call_once(transactional_db, account):
    # The proxy and the sync bring the same 600 calls at once, in overlapping batches sent twice.
    calls = make_records(range(600))
    proxy = [r | {"request_id": f"proxy-{i}", "upstream_request_id": f"rid-{i}"} for i, r in enumerate(calls)]
    synced = [r | {"request_id": f"rid-{i}", "upstream_request_id": f"rid-{i}"} for i, r in enumerate(calls)]
    batches = [("proxy", proxy[s : s + 150]) for s in range(0, 600, 75)] + [
        ("sync", synced[s : s + 150]) for s in range(0, 600, 75)
    ]
    batches *= 2
    random.Random(5).shuffle(batches)

    def send(job: tuple[str, list[dict]]) -> None:
        source, raw = job
        valid, rejected = validate_records(raw)
        assert not rejected
        try:
            record_usage(account, valid, source=source)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, batches))

    assert UsageRecord.objects.filter(account=account).count() == 600
    assert CallSighting.objects.filter(account=account).count() == 600
    assert rollups.verify(account) == []
    assert sum(group["requests"] for group in rollups.stored(account).values()) == 600
