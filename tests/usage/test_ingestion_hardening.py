"""Ingestion and import as a careless client would use them: secrets sent as key names, the
same instant in two offsets, blank keys, absurd estimates, money as JSON numbers, broken CSV
quotes, and the schema fetched with a token."""

from __future__ import annotations

import hashlib
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from billing.models import PlanPurchase, WalletEntry
from usage.ingestion import content_hash
from usage.models import ApiKey, TokenScope, TokensSource, UsageRecord
from usage.schemas import RecordIn
from usage.services import create_api_token, rename_api_key

URL = "/api/v1/usage"


def record(request_id: str = "r-1", **overrides: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "occurred_at": "2026-11-20T10:15:00+01:00",
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
    } | overrides


@pytest.fixture
def token(account) -> str:
    return create_api_token(account=account, name="everything", scopes=list(TokenScope.values))[1]


@pytest.fixture
def send(token):
    client = Client()

    def post(*records: dict[str, Any], raw: str | None = None) -> dict[str, Any]:
        body = raw if raw is not None else json.dumps({"records": list(records)})
        response = client.post(URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
        assert response.status_code == 200, response.content
        return response.json()

    return post


def everything_stored() -> str:
    rows = [*UsageRecord.objects.values(), *ApiKey.objects.values()]
    return json.dumps(rows, default=str)


# --- API keys: a declared name, or a secret kept only as its hash ---------------------------------------


@pytest.mark.parametrize(
    "secret",
    ["my-company-key-1234567890abcdef", "AKIAIOSFODNN7EXAMPLE", "sk-short", "tenant-secret-0000111122223333"],
)
def test_a_key_value_that_looks_like_a_secret_is_kept_only_as_its_hash(send, secret):
    send(record("k", api_key=secret))

    key = ApiKey.objects.get()
    assert key.fingerprint == f"sha256:{hashlib.sha256(secret.encode()).hexdigest()}"
    assert secret not in everything_stored()


def test_a_name_written_name_colon_is_a_declared_name(send):
    send(record("k", api_key="name:backend"))

    key = ApiKey.objects.get()
    assert (key.name, key.fingerprint, key.last4) == ("backend", "name:backend", "")


def test_a_value_equal_to_a_declared_name_is_that_key(send):
    send(record("a", api_key="name:backend"))
    send(record("b", api_key="backend"))

    assert ApiKey.objects.count() == 1
    assert set(UsageRecord.objects.values_list("api_key__name", flat=True)) == {"backend"}


def test_a_secret_renamed_on_the_keys_page_is_still_recognised_by_its_hash(send):
    secret = "tenant-secret-0000111122223333"
    send(record("a", api_key=secret))
    rename_api_key(ApiKey.objects.get(), name="backend", team="search")

    send(record("b", api_key=secret))

    assert ApiKey.objects.count() == 1
    assert UsageRecord.objects.get(request_id="b").api_key.name == "backend"


@pytest.mark.parametrize(("value", "why"), [("   ", "blank"), ("", "at least 1"), ("name:  ", "no name")])
def test_a_blank_key_is_rejected_naming_api_key(send, value, why):
    body = send(record("k", api_key=value))

    assert body["accepted"] == 0
    assert body["rejected"][0]["field"] == "api_key"
    assert not ApiKey.objects.exists()


def test_console_token_names_are_declared_names(tmp_path: Path, account):
    row = {"type": 2, "created_at": 1_795_000_000, "model_name": "m", "token_name": "backend", "prompt_tokens": 3}
    path = tmp_path / "console.jsonl"
    path.write_text(json.dumps(row) + "\n")

    call_command("import_usage", str(path), "--format", "newapi", stdout=io.StringIO(), stderr=io.StringIO())

    assert ApiKey.objects.get().fingerprint == "name:backend"


# --- One instant, one hash ----------------------------------------------------------------------------


def test_the_same_instant_with_another_offset_is_a_duplicate(send):
    first = send(record("r", occurred_at="2026-11-20T10:15:00+01:00"))
    again = send(record("r", occurred_at="2026-11-20T09:15:00Z"))
    other = send(record("r", occurred_at="2026-11-20T09:16:00Z"))

    assert first["accepted"] == 1
    assert (again["duplicates"], again["conflicts"]) == (1, [])
    assert [c["request_id"] for c in other["conflicts"]] == ["r"]


def legacy_hash(payload: dict[str, Any]) -> str:
    """How records were hashed before instants were normalised: as sent."""
    dumped = RecordIn.model_validate(payload).model_dump(mode="json", exclude_none=True)
    return hashlib.sha256(json.dumps(dumped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def store_as_before(send, sent: dict[str, Any]) -> None:
    """`sent` stored the way older versions stored it: hashed as sent."""
    send(sent | {"api_key": f"name:{sent['api_key']}"})
    UsageRecord.objects.filter(request_id=sent["request_id"]).update(content_hash=legacy_hash(sent))


def test_a_replay_of_a_record_stored_under_the_old_hash_is_still_a_duplicate(send):
    sent = record("old", api_key="backend")  # +01:00, and a name as older versions took any value
    store_as_before(send, sent)

    assert send(sent)["duplicates"] == 1


def test_a_console_row_stored_before_names_were_declared_is_a_duplicate_when_read_again(send):
    sent = record("console", occurred_at="2026-11-20T09:15:00Z", api_key="backend")
    store_as_before(send, sent)

    assert send(sent | {"api_key": "name:backend"})["duplicates"] == 1


def test_hashes_of_records_sent_in_utc_did_not_change():
    payload = record("r", occurred_at="2026-11-20T09:15:00Z", api_key="sk-live-abcdefghijklmnop1234")

    assert content_hash(RecordIn.model_validate(payload)) == legacy_hash(payload)


# --- Estimates are capped ------------------------------------------------------------------------------


def test_an_estimate_never_exceeds_the_models_context_window_and_says_it_was_capped(send):
    send(record("huge", model="gpt-4o", usage=None, context_bytes=10_000_000, output_bytes=40))

    stored = UsageRecord.objects.get()
    assert stored.tokens_source == TokensSource.ESTIMATED
    assert stored.prompt_tokens == 128_000  # gpt-4o reads at most 128k tokens
    assert stored.completion_tokens == 10
    assert stored.estimator_version.endswith("+capped")


def test_a_model_with_no_known_window_is_capped_at_a_million_tokens(send):
    send(record("huge", model="in-house-llm", usage=None, context_bytes=10_000_000))

    stored = UsageRecord.objects.get()
    assert stored.prompt_tokens == 1_000_000
    assert stored.estimator_version.endswith("+capped")


def test_an_ordinary_estimate_is_not_flagged(send):
    send(record("small", model="gpt-4o", usage=None, context_bytes=4_000, output_bytes=400))

    stored = UsageRecord.objects.get()
    assert 1_000 < stored.prompt_tokens < 1_100
    assert not stored.estimator_version.endswith("+capped")


# --- Money as JSON numbers and decimal strings -------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "stored"), [("0.1", "0.1"), ("12", "12"), ('"0.0125"', "0.0125"), ("1e-3", "0.001")]
)
def test_a_cost_may_be_a_json_number_or_a_string_and_is_kept_exactly(send, written, stored):
    raw = '{"records": [{"request_id": "c", "occurred_at": "2026-11-20T09:00:00Z", "model": "m", "cost": %s}]}'

    body = send(raw=raw % written)

    assert body["accepted"] == 1, body
    assert UsageRecord.objects.get().cost == Decimal(stored)


@pytest.mark.parametrize("written", ["1e-11", "1e30", "-1", "true"])
def test_a_cost_that_cannot_be_stored_exactly_is_rejected_naming_cost(send, written):
    raw = '{"records": [{"request_id": "c", "occurred_at": "2026-11-20T09:00:00Z", "model": "m", "cost": %s}]}'

    body = send(raw=raw % written)

    assert body["rejected"][0]["field"] == "cost"


def test_billing_amounts_may_be_json_numbers(token, account):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    purchase = {
        "plan": "Pro",
        "tokens": 1000,
        "price": 19.99,
        "effective_at": "2026-11-01T00:00:00Z",
        "expires_at": "2026-12-01T00:00:00Z",
        "idempotency_key": "p-1",
    }
    top_up = {"kind": "top_up", "amount": 0.1, "occurred_at": "2026-11-01T00:00:00Z", "idempotency_key": "w-1"}

    assert client.post("/api/v1/purchases", purchase, content_type="application/json").status_code == 201
    assert client.post("/api/v1/wallet/entries", top_up, content_type="application/json").status_code == 201
    assert PlanPurchase.objects.get().price == Decimal("19.99")
    assert WalletEntry.objects.get(idempotency_key="w-1").amount == Decimal("0.1")


# --- CSV: a broken quote stays on its line --------------------------------------------------------


def import_csv(tmp_path: Path, text: str, account) -> str:
    path = tmp_path / "usage.csv"
    path.write_text(text)
    err = io.StringIO()
    call_command("import_usage", str(path), "--account", account.slug, stdout=io.StringIO(), stderr=err)
    return err.getvalue()


def test_an_unclosed_quote_is_reported_at_its_line_and_column_and_the_next_rows_go_in(tmp_path, account):
    broken = 'r1,2026-11-20T09:00:00Z,"gpt-4o,name:a'
    text = (
        "request_id,occurred_at,model,api_key\n"
        f"{broken}\n"
        "r2,2026-11-20T09:01:00Z,gpt-4o,name:a\n"
        "r3,2026-11-20T09:02:00Z,gpt-4o,name:a\n"
    )

    err = import_csv(tmp_path, text, account)

    column = broken.index('"') + 1
    assert err.strip() == (
        f"line 2: the quote opened at column {column} is not closed on this line; the next line is read as a new row"
    )
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["r2", "r3"]


def test_text_after_a_closing_quote_is_reported_where_it_is(tmp_path, account):
    broken = 'r1,2026-11-20T09:00:00Z,"gpt"4o'
    text = f"request_id,occurred_at,model\n{broken}\nr2,2026-11-20T09:01:00Z,gpt-4o\n"

    err = import_csv(tmp_path, text, account)

    assert err.strip() == f"line 2: text follows the closing quote at column {broken.rindex(chr(34)) + 1}"
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["r2"]


def test_a_quote_left_open_in_a_big_file_reads_no_further_than_a_few_lines(tmp_path, account):
    rows = "".join(f"r{n},2026-11-20T09:00:00Z,gpt-4o\n" for n in range(2, 500))
    text = f'request_id,occurred_at,model\nr1,2026-11-20T09:00:00Z,"gpt-4o\n{rows}'

    err = import_csv(tmp_path, text, account)

    assert err.strip().startswith("line 2: the quote opened at column 25")
    assert UsageRecord.objects.count() == 498


def test_a_quoted_cell_spanning_lines_is_still_one_cell(tmp_path, account):
    text = (
        "request_id,occurred_at,model,status_code,error_message\n"
        'r1,2026-11-20T09:00:00Z,gpt-4o,500,"upstream said:\nbad gateway"\n'
        "r2,2026-11-20T09:01:00Z,gpt-4o,200,\n"
    )

    assert import_csv(tmp_path, text, account) == ""
    assert UsageRecord.objects.count() == 2


def test_a_bad_cell_names_its_line_and_column(tmp_path, account):
    text = "request_id,occurred_at,model,prompt_tokens\nr1,2026-11-20T09:00:00Z,gpt-4o,12.5\n"

    assert import_csv(tmp_path, text, account).strip() == "line 2: prompt_tokens: '12.5' is not an integer"


# --- The schema, for whoever may call the API ----------------------------------------------------------


@pytest.mark.parametrize("scope", list(TokenScope.values))
def test_any_valid_token_reads_the_openapi_schema(account, scope):
    _, secret = create_api_token(account=account, name=scope, scopes=[scope])

    response = Client().get("/api/v1/openapi.json", HTTP_AUTHORIZATION=f"Bearer {secret}")

    assert response.status_code == 200
    assert "/api/v1/usage" in response.json()["paths"]


def test_the_schema_refuses_anonymous_callers_and_bad_tokens_with_a_json_401(account):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer toki_not-a-token"}):
        response = Client().get("/api/v1/openapi.json", **headers)

        assert response.status_code == 401
        assert response["Content-Type"].startswith("application/json")


def test_a_logged_in_user_reads_the_schema(roleless_client):
    assert roleless_client.get("/api/v1/openapi.json").status_code == 200
