"""One upstream call, one record: a call two sources bring is counted once, whichever
arrives first, and each source's own replays stay duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from usage import rollups
from usage.identity import source_overlap
from usage.models import CallKey, CallSighting, ModelPrice, PriceSource, TokenScope, UsageRecord
from usage.schemas import validate_records
from usage.services import IngestResult, create_api_token, record_usage

WHEN = datetime(2026, 11, 20, 10, 15, tzinfo=UTC)


@pytest.fixture(autouse=True)
def priced(db) -> None:
    ModelPrice.objects.create(
        model_pattern="gpt-4o", input_per_mtok=Decimal("2.5"), output_per_mtok=Decimal("10"), currency="USD",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC), source=PriceSource.MANUAL,
    )  # fmt: skip


def call(request_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "request_id": request_id,
        "occurred_at": WHEN.isoformat(),
        "model": "gpt-4o",
        "usage": {"prompt_tokens": 1000, "completion_tokens": 200},
    }
    return body | extra


def send(account, source: str, *records: dict[str, Any]) -> IngestResult:
    valid, rejected = validate_records(list(records))
    assert not rejected, rejected
    return record_usage(account, valid, source=source)


def totals(account) -> tuple[int, int, Decimal]:
    rows = rollups.stored(account).values()
    return (
        sum(r["requests"] for r in rows),
        sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows),
        sum(Decimal(r["cost"]) for r in rows),
    )


def test_a_call_the_proxy_recorded_and_the_sync_brings_again_is_counted_once_and_linked(account):
    send(account, "proxy", call("proxy-1", upstream_request_id="20261120101500abcd1234", response_id="chatcmpl-9"))

    result = send(account, "sync", call("20261120101500abcd1234", upstream_request_id="20261120101500abcd1234"))

    assert (result.accepted, result.duplicates, result.other_source_duplicates, result.conflicts) == (0, 1, 1, [])
    (record,) = UsageRecord.objects.filter(account=account)
    assert record.request_id == "proxy-1"
    (sighting,) = record.sightings.all()
    assert (sighting.request_id, sighting.source) == ("20261120101500abcd1234", "sync")
    assert totals(account) == (1, 1200, Decimal("0.0045"))
    assert rollups.verify(account) == []


def test_in_the_other_order_the_sync_record_counts_the_call_and_the_proxy_is_linked_to_it(account):
    send(account, "sync", call("20261120101500abcd1234", upstream_request_id="20261120101500abcd1234"))

    result = send(account, "proxy", call("proxy-1", upstream_request_id="20261120101500abcd1234"))

    assert (result.accepted, result.duplicates, result.other_source_duplicates) == (0, 1, 1)
    (record,) = UsageRecord.objects.filter(account=account)
    assert (record.request_id, record.source) == ("20261120101500abcd1234", "sync")
    assert record.sightings.get().source == "proxy"
    assert totals(account) == (1, 1200, Decimal("0.0045"))


def test_the_response_id_recognises_the_call_too(account):
    send(account, "proxy", call("proxy-1", response_id="chatcmpl-abc", upstream_request_id="req-1"))

    result = send(account, "api", call("client-log-7", response_id="chatcmpl-abc"))

    assert result.other_source_duplicates == 1
    assert UsageRecord.objects.filter(account=account).count() == 1


def test_replays_of_the_later_source_stay_duplicates_and_other_content_under_its_id_is_a_conflict(account):
    send(account, "proxy", call("proxy-1", upstream_request_id="rid-1"))
    later = call("sync-1", upstream_request_id="rid-1")
    send(account, "sync", later)

    replay = send(account, "sync", later)
    # Even without the provider's id, the request_id is known: a replay all the same.
    replay_without_id = send(account, "sync", {k: v for k, v in later.items() if k != "upstream_request_id"})
    changed = send(account, "sync", later | {"usage": {"prompt_tokens": 5, "completion_tokens": 1}})

    assert (replay.accepted, replay.duplicates, replay.other_source_duplicates) == (0, 1, 0)
    assert (replay_without_id.accepted, replay_without_id.duplicates) == (0, 1)
    assert (changed.accepted, changed.duplicates, changed.conflicts) == (0, 0, [{"index": 0, "request_id": "sync-1"}])
    assert UsageRecord.objects.filter(account=account).count() == 1
    assert CallSighting.objects.filter(account=account).count() == 1


def test_one_source_never_merges_two_of_its_own_records(account):
    # Upstreams whose ids repeat (a simulator, a gateway with fixed ids) must not lose calls.
    result = send(account, "proxy", call("proxy-1", response_id="same"), call("proxy-2", response_id="same"))
    again = send(account, "proxy", call("proxy-3", response_id="same"))

    assert (result.accepted, again.accepted) == (2, 1)
    assert totals(account)[0] == 3
    # The first holds the id; another source's record of that id is linked to it.
    assert send(account, "api", call("client-1", response_id="same")).other_source_duplicates == 1
    assert CallSighting.objects.get().record.request_id == "proxy-1"


def test_a_request_id_already_stored_as_a_record_is_never_turned_into_a_sighting(account):
    # A record stored before its provider id was known (no CallKey), then the same call from another source.
    send(account, "sync", call("rid-1"))
    send(account, "proxy", call("proxy-1", upstream_request_id="rid-1"))

    replay = send(account, "sync", call("rid-1", upstream_request_id="rid-1"))

    assert (replay.accepted, replay.duplicates, replay.other_source_duplicates) == (0, 1, 0)
    assert CallSighting.objects.count() == 0 and UsageRecord.objects.count() == 2


def test_what_the_later_source_reported_is_kept_on_the_sighting(account):
    send(account, "proxy", call("proxy-1", upstream_request_id="rid-1"))
    usage = {"prompt_tokens": 990, "completion_tokens": 200}
    send(account, "sync", call("sync-1", upstream_request_id="rid-1", usage=usage))

    sighting = CallSighting.objects.get()
    assert (sighting.prompt_tokens, sighting.completion_tokens) == (990, 200)
    assert sighting.occurred_at == WHEN


def test_the_keys_of_a_record_name_it_by_the_providers_ids(account):
    send(account, "proxy", call("proxy-1", response_id="chatcmpl-1", upstream_request_id="rid-1"))

    keys = dict(CallKey.objects.values_list("key", "record__request_id"))
    assert keys == {"response:chatcmpl-1": "proxy-1", "request:rid-1": "proxy-1"}


def test_the_overlap_between_sources_is_counted_per_pair(account):
    send(account, "proxy", *[call(f"p-{i}", upstream_request_id=f"rid-{i}") for i in range(5)])
    send(account, "sync", *[call(f"s-{i}", upstream_request_id=f"rid-{i}") for i in range(3, 8)])
    send(account, "import", call("i-0", upstream_request_id="rid-0"))

    overlap = source_overlap(account, start=WHEN - timedelta(hours=1), end=WHEN + timedelta(hours=1))

    assert [(o.counted_by, o.seen_by, o.calls) for o in overlap] == [("proxy", "sync", 2), ("proxy", "import", 1)]
    assert source_overlap(account, start=WHEN, end=WHEN + timedelta(hours=1)) == []


def test_the_ingestion_api_counts_a_call_another_source_recorded_as_a_duplicate(account):
    send(account, "proxy", call("proxy-1", upstream_request_id="rid-1"))
    token = create_api_token(account=account, name="t", scopes=[TokenScope.INGEST])[1]

    response = Client().post(
        "/api/v1/usage",
        data=json.dumps({"records": [call("client-1", upstream_request_id="rid-1"), call("client-2")]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.json() == {
        "accepted": 1,
        "duplicates": 1,
        "conflicts": [],
        "rejected": [],
        "other_source_duplicates": 1,
    }
