"""A real Celery worker, on the broker the settings configure, repairs a corrupted rollup.

Embedded mode (no REDIS_URL) uses the file-system broker under TOKI_VAR_DIR; with
REDIS_URL set (CI) the same test goes through Redis. tests/settings.py gives every
run its own queue, so nothing left behind by another run is consumed here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun
from celery.worker import WorkController
from django.core.cache import cache
from django.db import connection, connections
from django.utils import timezone

from toki_dashboard.celery import app
from usage import rollups
from usage.models import Account, HourlyUsage
from usage.schemas import RecordIn
from usage.services import record_usage
from usage.tasks import rebuild_rollups

DEADLINE_SECONDS = 30


def _close_worker_connections(**kwargs: object) -> None:
    # The test worker runs in a thread of this process and skips Celery's Django
    # fixup, which closes connections after each task; without this the thread's
    # connection would outlive it and keep the test database busy at teardown.
    connections.close_all()


@pytest.fixture
def worker(transactional_db: None) -> Iterator[WorkController]:
    task_postrun.connect(_close_worker_connections, weak=False)
    try:
        # The run's queue named: a worker started with other queues before (the import page's
        # test) leaves its selection on the app, and this worker would consume only those.
        queues = [app.conf.task_default_queue]
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=30, queues=queues) as started:
            yield started
    finally:
        task_postrun.disconnect(_close_worker_connections)
        # Leave nothing of this run's queue behind in a shared Redis. (Declared first:
        # a channel deletes only the bindings it knows about.)
        with app.connection_for_write() as connection:
            queue = app.amqp.queues[app.conf.task_default_queue].bind(connection.default_channel)
            queue.declare()
            queue.delete()


def _records(count: int) -> list[tuple[int, RecordIn]]:
    # Four hours back: the last of the 12 records (17 minutes apart) is then always in the past,
    # whatever the minute of the hour the test runs at.
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=4)
    return [
        (
            i,
            RecordIn(
                request_id=f"req-{i}",
                occurred_at=start + timedelta(minutes=17 * i),
                model=("gpt-4o", "deepseek-chat")[i % 2],
                api_key=f"key-{i % 3}",
                usage={"prompt_tokens": 100 + i, "completion_tokens": 10 * i},
                latency_ms=200 + i,
                cost="0.0012",
                metadata={"team": "search" if i % 2 else "chat"},
            ),
        )
        for i in range(count)
    ]


def _corrupt(account: Account) -> None:
    """Wrong counters in one group, a group missing, and a group that has no records."""
    groups = list(HourlyUsage.objects.filter(account=account).order_by("pk"))
    first, second = groups[0], groups[1]
    HourlyUsage.objects.filter(pk=first.pk).update(requests=first.requests + 40, prompt_tokens=7)
    HourlyUsage.objects.filter(pk=second.pk).delete()
    HourlyUsage.objects.create(account=account, hour=first.hour, model="ghost-model", requests=3, cost=9)


def test_the_worker_rebuilds_a_corrupted_rollup_to_match_the_records(worker: WorkController, account: Account) -> None:
    record_usage(account, _records(12), source="api")
    _corrupt(account)
    assert len(rollups.verify(account)) == 3

    rebuild_rollups.delay(account.pk)

    deadline = time.monotonic() + DEADLINE_SECONDS
    while rollups.verify(account) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rollups.verify(account) == [], f"the worker did not repair the rollup within {DEADLINE_SECONDS}s"
    assert not HourlyUsage.objects.filter(account=account, model="ghost-model").exists()


def _known_accounts(table: str) -> set[int]:
    """The accounts PostgreSQL's statistics of `table` name among its most common."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT most_common_vals::text FROM pg_stats WHERE tablename = %s AND attname = 'account_id'", [table]
        )
        row = cursor.fetchone()
    return {int(value) for value in row[0].strip("{}").split(",")} if row and row[0] else set()


@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the statistics are PostgreSQL's planner's; SQLite keeps none per account"
)
def test_after_ingestion_the_worker_refreshes_the_statistics_so_the_planner_knows_the_new_account(
    worker: WorkController, account: Account, settings: Any
) -> None:
    settings.STATISTICS_REFRESH_SECONDS = 0.5
    cache.delete(f"usage:statistics:{connection.settings_dict['NAME']}")  # an earlier test's refresh window
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_registeredrequest")  # statistics from before the account had a record
    assert account.pk not in _known_accounts("usage_registeredrequest")

    record_usage(account, _records(12), source="api")

    deadline = time.monotonic() + DEADLINE_SECONDS
    while account.pk not in _known_accounts("usage_registeredrequest") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert account.pk in _known_accounts("usage_registeredrequest")
    assert account.pk in _known_accounts("usage_hourlyusage")
