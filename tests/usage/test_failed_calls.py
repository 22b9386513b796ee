"""Only what was served is billed: a failed call without reported usage has no tokens and
costs zero on every ingestion path; its logged lengths stay for diagnosis."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from usage import rollups
from usage.models import Account, ModelPrice, PriceSource, TokenScope, UsageRecord
from usage.services import create_api_token

WHEN = "2026-11-20T10:15:00+00:00"
LENGTHS = {"context_chars": 40_000, "context_bytes": 40_000, "message_count": 3}


@pytest.fixture
def priced(account: Account) -> ModelPrice:
    return ModelPrice.objects.create(
        model_pattern="gpt-4o",
        input_per_mtok=Decimal("2.5"),
        output_per_mtok=Decimal("10"),
        currency="USD",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        source=PriceSource.MANUAL,
    )


def failed(request_id: str, status: int, **extra: Any) -> dict[str, Any]:
    body = {"request_id": request_id, "occurred_at": WHEN, "model": "gpt-4o", "status_code": status}
    return body | LENGTHS | extra


def through_api(account: Account, records: list[dict[str, Any]], tmp_path: Path) -> None:
    token = create_api_token(account=account, name="t", scopes=[TokenScope.INGEST])[1]
    response = Client().post(
        "/api/v1/usage",
        data=json.dumps({"records": records}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200 and not response.json()["rejected"], response.content


def through_jsonl_import(account: Account, records: list[dict[str, Any]], tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    call_command("import_usage", str(path), "--account", account.slug, stdout=io.StringIO(), stderr=io.StringIO())


def through_csv_import(account: Account, records: list[dict[str, Any]], tmp_path: Path) -> None:
    columns = ["request_id", "occurred_at", "model", "status_code", "error_type", "error_code", *LENGTHS]
    columns += ["output_chars", "output_bytes"]
    columns += ["prompt_tokens", "completion_tokens"]
    path = tmp_path / "usage.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        for r in records:
            error = r.get("error", {})
            usage = r.get("usage", {})
            row = {k: v for k, v in r.items() if k in columns} | {
                "error_type": error.get("type", ""),
                "error_code": error.get("code", ""),
                "prompt_tokens": usage.get("prompt_tokens", ""),
                "completion_tokens": usage.get("completion_tokens", ""),
            }
            writer.writerow(row)
    call_command("import_usage", str(path), "--account", account.slug, stdout=io.StringIO(), stderr=io.StringIO())


PATHS: dict[str, Callable[..., None]] = {
    "api": through_api,
    "jsonl": through_jsonl_import,
    "csv": through_csv_import,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, {"type": "invalid_request_error", "code": "unsupported_parameter"}),
        (401, {"type": "invalid_request_error", "code": "invalid_api_key"}),
        (404, {"type": "invalid_request_error", "code": "model_not_found"}),
        (429, {"type": "insufficient_quota", "code": "insufficient_quota"}),
        (499, {"type": "client_cancelled", "code": "client_cancelled"}),
        (500, {"type": "server_error"}),
        (502, {"type": "upstream_error", "code": "upstream_unreachable"}),
        (504, {"type": "timeout", "code": "upstream_timeout"}),
    ],
)
def test_a_failed_call_without_usage_has_no_tokens_and_costs_zero_on_every_path(
    account, priced, tmp_path, path, status, error
):
    PATHS[path](account, [failed("f-1", status, error=error, output_chars=200, output_bytes=200)], tmp_path)

    stored = UsageRecord.objects.get(account=account, request_id="f-1")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.tokens_source) == (0, 0, "none")
    assert stored.cost == 0 and stored.estimator_version == ""
    assert (stored.context_chars, stored.context_bytes, stored.message_count, stored.output_chars) == (
        40_000,
        40_000,
        3,
        200,
    )
    assert rollups.verify(account) == []


@pytest.mark.parametrize("path", PATHS)
def test_a_failed_call_on_an_unpriced_model_is_zero_not_unpriced(account, tmp_path, path):
    PATHS[path](account, [failed("f-1", 502, model="no-price-model", error={"type": "upstream_error"})], tmp_path)

    stored = UsageRecord.objects.get(account=account, request_id="f-1")
    assert stored.cost == 0
    assert rollups.stored(account)[next(iter(rollups.stored(account)))]["unpriced_requests"] == 0


@pytest.mark.parametrize("path", PATHS)
def test_a_failed_call_whose_upstream_reported_usage_keeps_it_and_is_priced(account, priced, tmp_path, path):
    usage = {"prompt_tokens": 1000, "completion_tokens": 100}
    PATHS[path](account, [failed("f-1", 500, error={"type": "server_error"}, usage=usage)], tmp_path)

    stored = UsageRecord.objects.get(account=account, request_id="f-1")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.tokens_source) == (1000, 100, "reported")
    assert stored.cost == Decimal("0.0035")  # 1000 × 2.5 + 100 × 10 per million


@pytest.mark.parametrize("path", PATHS)
def test_a_successful_call_without_usage_is_still_estimated_and_priced(account, priced, tmp_path, path):
    PATHS[path](account, [failed("ok-1", 200)], tmp_path)

    stored = UsageRecord.objects.get(account=account, request_id="ok-1")
    assert stored.tokens_source == "estimated" and stored.prompt_tokens > 0
    assert stored.cost > 0


def test_an_http_200_answer_carrying_an_error_is_a_failed_call_too(account, priced, tmp_path):
    error = {"type": "insufficient_quota", "code": "insufficient_quota", "message": "quota exhausted"}
    through_api(account, [failed("e-1", 200, error=error)], tmp_path)

    stored = UsageRecord.objects.get(account=account, request_id="e-1")
    assert stored.error_cause == "insufficient_quota"
    assert (stored.prompt_tokens, stored.completion_tokens, stored.tokens_source, stored.cost) == (0, 0, "none", 0)
