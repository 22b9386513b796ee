"""POST /api/v1/usage as docs/api.md specifies it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from usage import rollups
from usage.models import ApiKey, ModelPrice, TokenScope, UsageRecord
from usage.services import create_api_token, revoke_api_token

URL = "/api/v1/usage"


def record(request_id: str = "req-1", **overrides: Any) -> dict[str, Any]:
    base = {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00+01:00",
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
    }
    return base | overrides


@pytest.fixture
def token(account) -> str:
    return create_api_token(account=account, name="shipper", scopes=[TokenScope.INGEST])[1]


@pytest.fixture
def post(token):
    client = Client()

    def send(body: Any, *, bearer: str | None = token, raw: bytes | None = None) -> Any:
        headers = {"HTTP_AUTHORIZATION": f"Bearer {bearer}"} if bearer else {}
        data = raw if raw is not None else json.dumps(body)
        return client.post(URL, data=data, content_type="application/json", **headers)

    return send


def test_valid_records_are_stored_with_their_tokens_and_utc_time(post, account):
    response = post({"records": [record("a"), record("b", model="gpt-4o")]})

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "conflicts": [],
        "rejected": [],
        "other_source_duplicates": 0,
    }
    stored = UsageRecord.objects.get(account=account, request_id="a")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.tokens_source) == (1200, 300, "reported")
    assert stored.occurred_at.isoformat() == "2026-11-20T09:15:00+00:00"
    assert stored.source == "api"


def test_responses_api_usage_shape_is_understood(post, account):
    usage = {
        "input_tokens": 800,
        "output_tokens": 90,
        "input_tokens_details": {"cached_tokens": 500},
        "output_tokens_details": {"reasoning_tokens": 40},
    }
    post({"records": [record("r", usage=usage)]})

    stored = UsageRecord.objects.get(request_id="r")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.cached_tokens, stored.reasoning_tokens) == (
        800,
        90,
        500,
        40,
    )


def test_a_replayed_batch_is_all_duplicates_and_changes_nothing(post, account):
    batch = {"records": [record(f"r{i}") for i in range(5)]}
    post(batch)
    before = rollups.stored(account)

    response = post(batch)

    assert response.json() == {
        "accepted": 0,
        "duplicates": 5,
        "conflicts": [],
        "rejected": [],
        "other_source_duplicates": 0,
    }
    assert rollups.stored(account) == before
    assert UsageRecord.objects.count() == 5


def test_same_request_id_with_other_content_is_a_conflict_and_keeps_the_stored_record(post):
    post({"records": [record("x")]})

    response = post({"records": [record("y"), record("x", model="gpt-4o")]})

    assert response.json()["conflicts"] == [{"index": 1, "request_id": "x"}]
    assert response.json()["accepted"] == 1
    assert UsageRecord.objects.get(request_id="x").model == "gpt-4o-mini"


def test_invalid_records_are_rejected_by_index_and_field_while_valid_ones_are_kept(post):
    bad_tokens = record("bad1", usage={"prompt_tokens": -5, "completion_tokens": 1})
    absurd = record("bad2", usage={"prompt_tokens": 10**12, "completion_tokens": 1})
    wrong_type = record("bad3", stream="yes")
    unknown = record("bad4", prompt="the text itself")
    future = record("bad5", occurred_at=(timezone.now() + timedelta(hours=1)).isoformat())
    naive = record("bad6", occurred_at="2026-11-20T10:15:00")
    no_id = {k: v for k, v in record().items() if k != "request_id"}

    response = post({"records": [record("ok1"), bad_tokens, absurd, wrong_type, unknown, future, naive, no_id]})

    body = response.json()
    assert response.status_code == 200
    assert body["accepted"] == 1
    fields = {r["index"]: r["field"] for r in body["rejected"]}
    assert fields == {
        1: "usage.prompt_tokens",
        2: "usage.prompt_tokens",
        3: "stream",
        4: "prompt",
        5: "occurred_at",
        6: "occurred_at",
        7: "request_id",
    }
    assert all(r["message"] for r in body["rejected"])
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["ok1"]


def test_a_record_that_is_not_an_object_is_rejected_not_a_500(post):
    response = post({"records": [42, "text", None, record("fine")]})

    assert response.status_code == 200
    assert [r["index"] for r in response.json()["rejected"]] == [0, 1, 2]
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"records": [\xff]}', "UTF-8"),
        (b"[]", "JSON object"),
        (b'{"records": {}}', "array"),
        (b'{"records": []}', "empty"),
        (b'{"records": [], "extra": 1}', "Unknown top-level"),
    ],
)
def test_a_malformed_body_is_a_400_that_says_what_is_wrong(post, raw, expected):
    response = post(None, raw=raw)

    assert response.status_code == 400
    assert expected in response.json()["detail"]


def test_more_than_ten_thousand_records_is_a_413(post):
    response = post({"records": [record(f"r{i}") for i in range(10_001)]})

    assert response.status_code == 413
    assert UsageRecord.objects.count() == 0


def test_a_body_over_ten_megabytes_is_a_413(post):
    padding = "x" * 1000
    records = [record(f"r{i}", metadata={"note": padding}) for i in range(10_500)]

    response = post(None, raw=json.dumps({"records": records}).encode())

    assert response.status_code == 413


@pytest.mark.parametrize("bearer", [None, "toki_not-a-real-token", "Basic abc"])
def test_missing_or_unknown_token_is_a_401(post, bearer):
    assert post({"records": [record()]}, bearer=bearer).status_code == 401


def test_a_revoked_token_is_a_401(post, account, token):
    from usage.models import ApiToken

    revoke_api_token(ApiToken.objects.get(account=account))

    assert post({"records": [record()]}).status_code == 401


def test_a_token_without_the_ingest_scope_is_a_403(post, account):
    _, read_only = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])

    assert post({"records": [record()]}, bearer=read_only).status_code == 403


def test_a_full_key_secret_is_stored_only_as_hash_and_last_four(post):
    secret = "sk-live-" + "a1B2c3D4e5F6g7H8i9J0" + "wxyz"

    post({"records": [record("k", api_key=secret)]})

    key = ApiKey.objects.get()
    assert key.last4 == "wxyz"
    assert secret not in key.fingerprint and secret not in key.name
    assert secret not in json.dumps(list(UsageRecord.objects.values()), default=str)


def test_records_without_usage_are_estimated_from_logged_lengths(post):
    post({"records": [record("e", usage=None, context_bytes=4000, output_bytes=400, message_count=2)]})

    stored = UsageRecord.objects.get(request_id="e")
    assert stored.tokens_source == "estimated"
    assert stored.estimator_version
    assert stored.prompt_tokens == 4000 // 4 + 2 * 3 + 3
    assert stored.completion_tokens == 100


def test_cost_is_computed_from_the_price_in_effect_with_cached_tokens_at_the_cached_rate(post, account):
    ModelPrice.objects.create(
        model_pattern="gpt-4o-mini",
        input_per_mtok=Decimal("0.15"),
        cached_input_per_mtok=Decimal("0.075"),
        output_per_mtok=Decimal("0.60"),
        effective_from=datetime(2026, 1, 1, tzinfo=UTC),
    )
    usage = {"prompt_tokens": 1000, "completion_tokens": 500, "prompt_tokens_details": {"cached_tokens": 400}}

    post({"records": [record("c", usage=usage)]})

    # 600 × 0.15 + 400 × 0.075 + 500 × 0.60, per million tokens
    assert UsageRecord.objects.get(request_id="c").cost == Decimal("0.00042")


def test_a_reported_cost_wins_over_the_computed_one(post):
    post({"records": [record("c", cost="0.0123")]})

    stored = UsageRecord.objects.get(request_id="c")
    assert (stored.cost, stored.cost_source) == (Decimal("0.0123"), "reported")


def test_error_calls_carry_their_classified_cause(post):
    quota = record(
        "q",
        status_code=429,
        usage=None,
        error={"type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded your quota"},
    )
    post({"records": [quota]})

    assert UsageRecord.objects.get(request_id="q").error_cause == "insufficient_quota"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"request_id": "nul\x00byte"}, "request_id"),
        ({"model": "\ud800"}, "model"),
        ({"api_key": "k" * 201}, "api_key"),
        ({"metadata": {"team": "t" * 101}}, "metadata"),
        ({"metadata": {"user": 5}}, "metadata.user"),
    ],
)
def test_values_the_database_cannot_store_are_rejected_by_field(post, overrides, field):
    response = post({"records": [record("fine"), record("bad") | overrides]})

    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["field"] == field
