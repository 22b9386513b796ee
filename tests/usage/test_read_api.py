"""GET /api/v1/usage/summary and /api/v1/usage/records, and the schema they are described by."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client, override_settings

from usage.models import TokenScope
from usage.schemas import validate_records
from usage.services import create_account, create_api_token, record_usage


def ingest(account, *records: dict) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected
    record_usage(account, valid, source="api")


def rec(request_id: str, occurred_at: str, model: str = "gpt-4o", **extra) -> dict:
    return {
        "request_id": request_id,
        "occurred_at": occurred_at,
        "model": model,
        "usage": {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 40}},
        "cost": "0.5",
    } | extra


@pytest.fixture
def reader(account) -> Client:
    token = create_api_token(account=account, name="reader", scopes=[TokenScope.READ])[1]
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


@pytest.fixture
def usage(account) -> None:
    ingest(
        account,
        rec("a", "2026-11-20T10:00:00Z", api_key="name:search-key", metadata={"team": "search"}),
        rec("b", "2026-11-20T23:30:00Z", model="gpt-4o-mini", api_key="name:bot-key", metadata={"team": "support"}),
        rec(
            "c",
            "2026-11-21T08:00:00Z",
            api_key="name:search-key",
            metadata={"team": "search"},
            status_code=429,
            error={"type": "rate_limit_exceeded", "message": "slow down"},
        ),
        rec("d", "2026-11-22T08:00:00Z", usage=None, context_bytes=400, cost=None),
    )


def test_summary_by_model_sums_each_model_and_the_total(reader, usage):
    body = reader.get("/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "model"}).json()

    rows = {row["key"]: row for row in body["rows"]}
    assert rows["gpt-4o"]["requests"] == 3
    assert rows["gpt-4o"]["errors"] == 1
    assert rows["gpt-4o"]["estimated_requests"] == 1
    assert rows["gpt-4o-mini"] == {
        "key": "gpt-4o-mini",
        "requests": 1,
        "errors": 0,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": 40,
        "estimated_requests": 0,
        "cost": "0.5",
        "unpriced_requests": 0,
        # Not allocated yet (no worker runs in this test): said so, not counted as paid.
        "paid": "0",
        "paid_not_converted": {},
        "paid_unknown_requests": 0,
        "paid_pending_requests": 1,
    }
    assert body["total"]["requests"] == 4
    assert Decimal(body["total"]["cost"]) == Decimal("1.5")
    assert body["currency"] == "USD"


def test_summary_end_date_is_inclusive(reader, usage):
    body = reader.get("/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-20", "group_by": "team"}).json()

    assert {row["key"]: row["requests"] for row in body["rows"]} == {"search": 1, "support": 1}


@override_settings(DASHBOARD_TIME_ZONE="Asia/Shanghai")
def test_summary_days_are_days_in_the_dashboard_time_zone(reader, usage):
    body = reader.get("/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "day"}).json()

    # 23:30 UTC on the 20th is the morning of the 21st in Shanghai.
    assert {row["key"]: row["requests"] for row in body["rows"]} == {"2026-11-20": 1, "2026-11-21": 2, "2026-11-22": 1}


def test_summary_by_key_uses_key_names(reader, usage):
    body = reader.get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "api_key"}
    ).json()

    assert {row["key"]: row["requests"] for row in body["rows"]} == {"search-key": 2, "bot-key": 1, "": 1}


def test_records_are_newest_first_and_keyset_paginated_without_gaps_or_repeats(reader, account):
    ingest(account, *[rec(f"r{i:03d}", f"2026-11-20T10:{i % 60:02d}:00Z") for i in range(250)])
    seen, cursor = [], None
    while True:
        params = {"start": "2026-11-20", "end": "2026-11-20", "limit": 100} | ({"cursor": cursor} if cursor else {})
        body = reader.get("/api/v1/usage/records", params).json()
        seen.extend((r["occurred_at"], r["request_id"]) for r in body["records"])
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert len({request_id for _, request_id in seen}) == len(seen) == 250
    assert [t for t, _ in seen] == sorted((t for t, _ in seen), reverse=True)


def test_records_filter_by_error_cause_and_estimated(reader, usage):
    errors = reader.get(
        "/api/v1/usage/records", {"start": "2026-11-20", "end": "2026-11-22", "error_cause": "rate_limited"}
    )
    estimated = reader.get("/api/v1/usage/records", {"start": "2026-11-20", "end": "2026-11-22", "estimated": "true"})

    assert [r["request_id"] for r in errors.json()["records"]] == ["c"]
    assert [(r["request_id"], r["tokens_source"]) for r in estimated.json()["records"]] == [("d", "estimated")]


def test_a_record_carries_the_contract_fields(reader, usage):
    body = reader.get("/api/v1/usage/records", {"start": "2026-11-20", "end": "2026-11-20", "model": "gpt-4o"}).json()

    assert body["records"][0] == {
        "request_id": "a",
        "occurred_at": "2026-11-20T10:00:00Z",
        "model": "gpt-4o",
        "api_key": "search-key",
        "team": "search",
        "status_code": 200,
        "error_cause": "none",
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": 40,
        "reasoning_tokens": 0,
        "tokens_source": "reported",
        "estimator_version": "",
        "cost": "0.5",
        "latency_ms": None,
        "ttft_ms": None,
        "source": "api",
    }


def test_a_garbled_cursor_is_a_400(reader, usage):
    response = reader.get("/api/v1/usage/records", {"start": "2026-11-20", "end": "2026-11-22", "cursor": "nope"})

    assert response.status_code == 400


def test_a_token_cannot_read_another_account(reader, usage):
    create_account(name="Other", slug="other")

    response = reader.get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "model", "account": "other"}
    )

    assert response.status_code == 403


def test_an_ingest_only_token_cannot_read(account, usage):
    token = create_api_token(account=account, name="shipper", scopes=[TokenScope.INGEST])[1]

    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "model"}
    )

    assert response.status_code == 403


def test_a_logged_in_engineer_reads_with_the_session(engineer_client, usage):
    response = engineer_client.get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "model"}
    )

    assert response.status_code == 200


def test_a_logged_in_user_without_a_role_is_refused(roleless_client, usage):
    response = roleless_client.get(
        "/api/v1/usage/summary", {"start": "2026-11-20", "end": "2026-11-22", "group_by": "model"}
    )

    assert response.status_code == 403


def test_a_bad_query_is_a_400_naming_the_parameter(reader, usage):
    response = reader.get("/api/v1/usage/summary", {"start": "yesterday", "end": "2026-11-22", "group_by": "colour"})

    assert response.status_code == 400
    assert "start" in response.json()["detail"]
    assert "group_by" in response.json()["detail"]


def test_the_openapi_schema_documents_the_ingestion_record(engineer_client):
    schema = engineer_client.get("/api/v1/openapi.json").json()

    record = schema["components"]["schemas"]["RecordIn"]
    assert {"request_id", "occurred_at", "model", "usage", "context_profile", "metadata"} <= set(record["properties"])
    assert set(schema["paths"]) >= {"/api/v1/usage", "/api/v1/usage/summary", "/api/v1/usage/records"}


def test_the_docs_page_needs_a_login_and_loads_no_external_script(client, engineer_client):
    assert client.get("/api/v1/docs").status_code == 302

    page = engineer_client.get("/api/v1/docs").content.decode()
    assert "cdn" not in page.lower()
    assert "/static/ninja/swagger-ui-bundle.js" in page
