"""The bulk write paths under ingestion: small batches (one INSERT), large ones (COPY into a
staging table on PostgreSQL, chunked VALUES on SQLite), and the import's writer thread."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from usage import rollups
from usage.importers import ImportFormat, import_records, open_export
from usage.models import UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage
from usage.sql import COPY_FROM_ROWS, AnyOf, _sqlite_chunk_sizes

START = datetime(2026, 10, 1, tzinfo=UTC)


def raw_record(i: int, *, tokens: int | None = None, estimated: bool = False) -> dict:
    record: dict = {
        "request_id": f"bulk-{i}",
        "occurred_at": (START + timedelta(minutes=7 * i)).isoformat(),
        "model": ["gpt-4o", "gpt-4o-mini", "deepseek-chat"][i % 3],
        "api_key": ["search", "support"][i % 2],
        "metadata": {"team": ["a", "b"][i % 2], "feature": "chat"},
        "latency_ms": 100 + i,
    }
    if estimated:
        record |= {
            "context_chars": 400 + i,
            "output_chars": 80,
            "context_profile": {"letters": 300 + i, "spaces": 100},
        }
    else:
        record["usage"] = {"prompt_tokens": tokens if tokens is not None else 50 + i, "completion_tokens": 5}
    return record


def store(account, raws: list[dict]):
    valid, rejected = validate_records(raws)
    assert not rejected
    return record_usage(account, valid, source="api")


@pytest.mark.parametrize("size", [1, COPY_FROM_ROWS - 1, COPY_FROM_ROWS, 3 * COPY_FROM_ROWS + 5])
def test_a_batch_of_any_size_is_stored_once_and_replays_are_duplicates(account, size):
    raws = [raw_record(i) for i in range(size)]

    first = store(account, raws)
    again = store(account, raws)

    assert (first.accepted, first.duplicates) == (size, 0)
    assert (again.accepted, again.duplicates, again.conflicts) == (0, size, [])
    assert UsageRecord.objects.filter(account=account).count() == size
    assert rollups.verify(account) == []


def test_a_large_batch_that_overlaps_stored_records_inserts_only_the_new_ones(account):
    store(account, [raw_record(i) for i in range(0, 2 * COPY_FROM_ROWS)])
    changed = raw_record(5, tokens=999)  # same request_id, other content: a conflict

    result = store(account, [raw_record(i) for i in range(COPY_FROM_ROWS, 4 * COPY_FROM_ROWS)] + [changed])

    assert result.accepted == 2 * COPY_FROM_ROWS
    assert result.duplicates == COPY_FROM_ROWS
    assert [c["request_id"] for c in result.conflicts] == ["bulk-5"]
    assert UsageRecord.objects.get(account=account, request_id="bulk-5").prompt_tokens == 55
    assert UsageRecord.objects.filter(account=account).count() == 4 * COPY_FROM_ROWS
    assert rollups.verify(account) == []


def test_json_columns_keep_objects_and_sql_nulls_in_large_batches(account):
    raws = [raw_record(i, estimated=i % 2 == 0) for i in range(2 * COPY_FROM_ROWS)]

    store(account, raws)

    estimated = UsageRecord.objects.get(account=account, request_id="bulk-0")
    reported = UsageRecord.objects.get(account=account, request_id="bulk-1")
    assert estimated.context_profile["letters"] == 300
    assert estimated.metadata == {"team": "a", "feature": "chat"}
    assert reported.context_profile is None
    assert UsageRecord.objects.filter(account=account, context_profile__isnull=True).count() == COPY_FROM_ROWS


def test_a_rolled_back_large_batch_does_not_break_the_next_one(transactional_db, account):
    @transaction.atomic
    def write_then_fail() -> None:
        store(account, [raw_record(i) for i in range(2 * COPY_FROM_ROWS)])
        raise RuntimeError("the caller's transaction fails after the write")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert not UsageRecord.objects.filter(account=account).exists()

    result = store(account, [raw_record(i) for i in range(2 * COPY_FROM_ROWS)])

    assert result.accepted == 2 * COPY_FROM_ROWS
    assert rollups.verify(account) == []


def test_sqlite_chunks_cover_every_row_with_a_few_statement_shapes():
    largest = 900
    for total in [0, 1, 7, 899, 900, 901, 2 * 900 + 377, 10_000]:
        sizes = list(_sqlite_chunk_sizes(total, largest))
        assert sum(sizes) == total
        assert all(size == largest or (size & (size - 1) == 0 and size < largest) for size in sizes)
        assert len({s for s in sizes if s != largest}) == len([s for s in sizes if s != largest])


def test_an_import_outside_a_transaction_reports_in_file_order_and_keeps_rollups_exact(
    transactional_db, account, tmp_path: Path
):
    # Outside a transaction on PostgreSQL, batches are stored on a writer thread while the
    # next one is read; on SQLite they are stored in turn. The outcome must be the same.
    store(account, [raw_record(i) for i in range(10)])
    lines = [json.dumps(raw_record(i)) for i in range(400)]
    lines[3] = json.dumps(raw_record(3, tokens=7))  # conflicts with the stored bulk-3
    lines[150] = "{not json"
    lines[320] = json.dumps(raw_record(8, tokens=9))  # conflicts, in a later batch
    path = tmp_path / "usage.jsonl"
    path.write_text("\n".join(lines) + "\n")
    reports: list[str] = []

    with open_export(path, ImportFormat.JSONL) as source:
        summary = import_records(account, source, batch_size=COPY_FROM_ROWS + 11, report=reports.append)
    connection.close()

    assert (summary.read, summary.rejected, summary.conflicts) == (400, 1, 2)
    # 400 lines: bulk-0…bulk-399 except bulk-150 (line 151 is not JSON) and bulk-320 (line 321
    # holds bulk-8 again, with other content). bulk-0…9 were stored before; bulk-3 differs.
    assert summary.accepted == 390 - 2
    assert summary.duplicates == 9
    assert [r.split(":")[0] for r in reports] == ["line 4", "line 151", "line 321"]
    assert UsageRecord.objects.filter(account=account).count() == 10 + 388
    assert rollups.verify(account) == []


def test_any_of_finds_what_in_finds_with_the_values_as_one_parameter_on_postgresql(account):
    store(account, [raw_record(i) for i in range(5)])
    wanted = ["bulk-1", "bulk-3", "bulk-3", "bulk-9", None]

    with CaptureQueriesContext(connection) as queries:
        found = set(UsageRecord.objects.filter(AnyOf(F("request_id"), wanted)).values_list("request_id", flat=True))

    assert found == set(UsageRecord.objects.filter(request_id__in=wanted).values_list("request_id", flat=True))
    assert found == {"bulk-1", "bulk-3"}
    assert not UsageRecord.objects.filter(AnyOf(F("request_id"), [])).exists()
    if connection.vendor == "postgresql":
        assert "= ANY(" in queries[0]["sql"]
