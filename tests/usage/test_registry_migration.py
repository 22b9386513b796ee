"""Upgrading fills the registry of request ids from the records (and, on PostgreSQL, moves the
records into monthly partitions): replays and conflicts are told apart as before; the
migrations also run backwards."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from usage.models import Account, RegisteredRequest, UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage

BEFORE = [("usage", "0030_model_catalogue"), ("billing", "0017_remove_alertemail")]


def sent(request_id: str, at: datetime, prompt: int) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": at.isoformat(),
        "model": "gpt-4o",
        "usage": {"prompt_tokens": prompt},
    }


@pytest.mark.django_db(transaction=True)
def test_the_registry_is_filled_from_the_records_and_replays_stay_duplicates():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    # Records stored by the code of the time, through the service, then the table taken back
    # to before the registry: the registry's rows are what the migration must rebuild.
    account = Account.objects.create(name="A", slug="a", base_url="https://x.example/v1")
    batch = [
        sent("nov", datetime(2026, 11, 30, 23, 59, tzinfo=UTC), 10),
        sent("dec", datetime(2026, 12, 1, 0, 1, tzinfo=UTC), 20),
        sent("oct", datetime(2026, 10, 3, tzinfo=UTC), 30),
    ]
    valid, _ = validate_records(batch)
    assert record_usage(account, valid, source="api").accepted == 3
    hashes = dict(UsageRecord.objects.values_list("request_id", "content_hash"))

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    assert old.get_model("usage", "UsageRecord").objects.count() == 3
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(RegisteredRequest.objects.values_list("request_id", "content_hash")) == hashes
    assert UsageRecord.objects.count() == 3
    replay = record_usage(account, validate_records(batch)[0], source="api")
    assert (replay.accepted, replay.duplicates, replay.conflicts) == (0, 3, [])
    changed = record_usage(
        account, validate_records([sent("nov", datetime(2026, 12, 2, tzinfo=UTC), 10)])[0], source="api"
    )
    assert changed.conflicts == [{"index": 0, "request_id": "nov"}]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT tableoid::regclass::text, request_id FROM usage_usagerecord ORDER BY request_id")
            assert cursor.fetchall() == [
                ("usage_usagerecord_p2026_12", "dec"),
                ("usage_usagerecord_p2026_11", "nov"),
                ("usage_usagerecord_p2026_10", "oct"),
            ]
