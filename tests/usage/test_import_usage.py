"""manage.py import_usage (docs/import.md): JSONL, CSV and New API console exports."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from usage import rollups
from usage.importers import JsonDocument
from usage.models import ErrorCause, UsageRecord
from usage.schemas import validate_records
from usage.services import create_account, record_usage

WHEN = "2026-11-20T10:15:00+01:00"


def record(request_id: str, **overrides: Any) -> dict[str, Any]:
    base = {
        "request_id": request_id,
        "occurred_at": WHEN,
        "model": "gpt-4o-mini",
        "api_key": "backend",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
    }
    return base | overrides


def jsonl(*records: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def run(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_usage", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


# ── JSONL ─────────────────────────────────────────────────────────────────────


def test_jsonl_import_stores_records_with_their_tokens_as_source_import(account, tmp_path):
    path = write(tmp_path, "usage.jsonl", jsonl(record("a"), record("b", model="gpt-4o")))

    out, err = run(path)

    assert "2 accepted, 0 duplicates, 0 conflicts, 0 rejected, 0 skipped" in out
    assert "records/s" in out
    assert err == ""
    stored = UsageRecord.objects.get(account=account, request_id="a")
    assert (stored.prompt_tokens, stored.completion_tokens, stored.source) == (1200, 300, "import")
    assert stored.occurred_at == datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
    assert UsageRecord.objects.count() == 2


def test_importing_the_same_file_twice_reports_all_duplicates_and_keeps_rollups_identical(account, tmp_path):
    path = write(tmp_path, "usage.jsonl", jsonl(*(record(f"r{i}", model=f"m{i % 3}") for i in range(25))))
    run(path, "--batch-size", "10")
    before = rollups.stored(account)

    out, _ = run(path, "--batch-size", "7")

    assert "0 accepted, 25 duplicates, 0 conflicts, 0 rejected" in out
    assert rollups.stored(account) == before
    assert UsageRecord.objects.count() == 25
    assert rollups.verify(account) == []


def test_bad_lines_are_reported_with_their_line_numbers_and_the_rest_is_stored(account, tmp_path):
    future = (timezone.now() + timedelta(hours=2)).isoformat()
    no_model = {k: v for k, v in record("no-model").items() if k != "model"}
    content = (
        jsonl(record("ok1"))  # line 1
        + b'{"request_id": "broken", \n'  # line 2: not JSON
        + b'{"request_id": "caf\xe9"}\n'  # line 3: Latin-1, not UTF-8
        + b"   \n"  # line 4: blank, skipped silently
        + jsonl(record("neg", usage={"prompt_tokens": -5, "completion_tokens": 1}))  # line 5
        + jsonl(no_model)  # line 6
        + jsonl(record("future", occurred_at=future))  # line 7
        + jsonl(record("ok2"))  # line 8
    )
    path = write(tmp_path, "usage.jsonl", content)

    out, err = run(path)

    problems = err.splitlines()
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 5", "line 6", "line 7"]
    assert "not valid JSON" in problems[0]
    assert "not valid UTF-8" in problems[1]
    assert "usage.prompt_tokens" in problems[2]
    assert "model: is required" in problems[3]
    assert "occurred_at" in problems[4] and "future" in problems[4]
    assert "Read 7 rows" in out and "2 accepted" in out and "5 rejected" in out
    assert sorted(UsageRecord.objects.values_list("request_id", flat=True)) == ["ok1", "ok2"]


def test_a_replayed_request_id_with_other_content_is_a_conflict_naming_its_line(account, tmp_path):
    run(write(tmp_path, "first.jsonl", jsonl(record("x"))))

    out, err = run(write(tmp_path, "second.jsonl", jsonl(record("y"), record("x", model="gpt-4o"))))

    assert "1 accepted, 0 duplicates, 1 conflicts" in out
    assert err.startswith("line 2: request_id 'x'")
    assert UsageRecord.objects.get(request_id="x").model == "gpt-4o-mini"


def test_a_byte_order_mark_and_crlf_line_ends_are_accepted(account, tmp_path):
    content = b"\xef\xbb\xbf" + jsonl(record("a")).replace(b"\n", b"\r\n") + jsonl(record("b")).replace(b"\n", b"\r\n")

    out, err = run(write(tmp_path, "usage.ndjson", content))

    assert "2 accepted" in out
    assert err == ""


# ── Command arguments ─────────────────────────────────────────────────────────


def test_a_file_that_cannot_be_opened_is_a_command_error(account, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run(tmp_path / "missing.jsonl")


def test_an_extension_that_names_no_format_asks_for_format(account, tmp_path):
    path = write(tmp_path, "usage.txt", jsonl(record("a")))

    with pytest.raises(CommandError, match="--format"):
        run(path)
    out, _ = run(path, "--format", "jsonl")
    assert "1 accepted" in out


def test_with_several_accounts_the_account_must_be_named_and_the_slugs_are_listed(account, tmp_path):
    create_account(name="Beta", slug="beta")
    path = write(tmp_path, "usage.jsonl", jsonl(record("a")))

    with pytest.raises(CommandError, match="acme, beta"):
        run(path)
    with pytest.raises(CommandError, match="No account with slug 'gamma'"):
        run(path, "--account", "gamma")
    run(path, "--account", "beta")
    assert UsageRecord.objects.get().account.slug == "beta"


def test_without_any_account_the_command_says_how_to_create_one(db, tmp_path):
    with pytest.raises(CommandError, match="create_account"):
        run(write(tmp_path, "usage.jsonl", jsonl(record("a"))))


# ── CSV ───────────────────────────────────────────────────────────────────────

ALL_COLUMNS = (
    "request_id,occurred_at,model,api_key,endpoint,stream,status_code,prompt_tokens,completion_tokens,"
    "cached_tokens,reasoning_tokens,error_type,error_code,error_message,context_chars,context_bytes,"
    "output_chars,output_bytes,message_count,latency_ms,ttft_ms,cost,team,user,feature"
)


def test_a_csv_with_every_column_is_stored_field_by_field(account, tmp_path):
    rows = [
        ALL_COLUMNS,
        "c1,2026-11-20T10:15:00Z,gpt-4o,backend,/v1/responses,true,200,1000,200,600,50,,,,4000,4100,800,820,3,"
        "1500,320,0.0125,search,ana,summaries",
        'c2,2026-11-20T10:16:00Z,gpt-4o,backend,,0,429,,,,,rate_limit_error,rate_limit_exceeded,"Too many, slow down",'
        ",,,,,,,,,,",
    ]
    path = write(tmp_path, "usage.csv", "\r\n".join(rows) + "\r\n")

    out, err = run(path)

    assert "2 accepted" in out and err == ""
    full = UsageRecord.objects.get(request_id="c1")
    assert (full.prompt_tokens, full.completion_tokens, full.cached_tokens, full.reasoning_tokens) == (
        1000,
        200,
        600,
        50,
    )
    assert (full.endpoint, full.stream, full.status_code) == ("/v1/responses", True, 200)
    assert (full.context_chars, full.context_bytes, full.output_chars, full.output_bytes) == (4000, 4100, 800, 820)
    assert (full.message_count, full.latency_ms, full.ttft_ms) == (3, 1500, 320)
    assert full.cost == Decimal("0.0125") and full.cost_source == "reported"
    assert full.metadata == {"team": "search", "user": "ana", "feature": "summaries"}
    assert full.team == "search"
    failed = UsageRecord.objects.get(request_id="c2")
    assert (failed.stream, failed.status_code, failed.error_cause) == (False, 429, ErrorCause.RATE_LIMITED)
    assert failed.tokens_source == "none" and failed.metadata == {}


def test_a_csv_missing_a_required_column_fails_at_once_naming_it(account, tmp_path):
    path = write(tmp_path, "usage.csv", "request_id,prompt_tokens\nr1,5\n")

    with pytest.raises(CommandError, match=r"required column.*occurred_at, model"):
        run(path)
    assert not UsageRecord.objects.exists()


def test_a_csv_with_an_unknown_column_fails_at_once_naming_it(account, tmp_path):
    path = write(tmp_path, "usage.csv", "request_id,occurred_at,model,prompt_token\nr1,2026-11-20T10:00:00Z,m,5\n")

    with pytest.raises(CommandError, match=r"unknown column.*'prompt_token'"):
        run(path)


def test_a_non_integer_token_cell_is_rejected_naming_the_column_and_the_line(account, tmp_path):
    path = write(
        tmp_path,
        "usage.csv",
        "request_id,occurred_at,model,prompt_tokens,completion_tokens,stream\n"
        "ok,2026-11-20T10:00:00Z,m,10,2,false\n"
        "bad,2026-11-20T10:00:00Z,m,12.5,2,false\n"
        "bool,2026-11-20T10:00:00Z,m,10,2,yes\n"
        "neg,2026-11-20T10:00:00Z,m,10,-2,1\n",
    )

    out, err = run(path)

    assert err.splitlines() == [
        "line 3: prompt_tokens: '12.5' is not an integer",
        "line 4: stream: 'yes' is not one of true, false, 1, 0",
        "line 5: completion_tokens: Input should be greater than or equal to 0",
    ]
    assert "1 accepted" in out and "3 rejected" in out


def test_csv_rows_keep_the_providers_ids_of_the_call(account, tmp_path):
    content = "request_id,occurred_at,model,response_id,upstream_request_id\n"
    content += "r1,2026-11-20T10:00:00Z,m,chatcmpl-1,rid-1\n"

    run(write(tmp_path, "usage.csv", content))

    assert UsageRecord.objects.values_list("response_id", "upstream_request_id").get() == ("chatcmpl-1", "rid-1")


def test_csv_line_numbers_count_physical_lines_and_blank_rows_are_skipped(account, tmp_path):
    path = write(
        tmp_path,
        "usage.csv",
        'request_id,occurred_at,model,error_message\nr1,2026-11-20T10:00:00Z,m,"two\nlines"\n\n,,,\nr2,,m,\n',
    )

    out, err = run(path)

    assert err.startswith("line 6: occurred_at: is required")
    assert "Read 2 rows" in out and "1 accepted" in out


def test_an_invalid_utf8_csv_row_is_rejected_and_the_next_row_is_stored(account, tmp_path):
    content = b"request_id,occurred_at,model\nr\xe9,2026-11-20T10:00:00Z,m\nr2,2026-11-20T10:00:00Z,m\n"

    _, err = run(write(tmp_path, "usage.csv", content))

    assert err.startswith("line 2: not valid UTF-8")
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["r2"]


# ── New API console log rows ──────────────────────────────────────────────────

CREATED = 1763631000  # 2025-11-20 09:30:00 UTC


def log_row(**overrides: Any) -> dict[str, Any]:
    base = {
        "id": 901,
        "created_at": CREATED,
        "type": 2,
        "content": "model ratio 1.25, completion ratio 4",
        "token_name": "backend",
        "model_name": "gpt-4o-mini",
        "quota": 1840,
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "use_time": 3,
        "is_stream": True,
        "other": json.dumps({"model_ratio": 1.25, "completion_ratio": 4, "cache_tokens": 512, "frt": 830.0}),
    }
    return base | overrides


def test_newapi_rows_with_other_as_a_json_string_give_cached_tokens_ttft_and_latency(account, tmp_path):
    path = write(tmp_path, "logs.jsonl", jsonl(log_row(request_id="req-abc")))

    out, err = run(path, "--format", "newapi")

    assert "1 accepted" in out and err == ""
    stored = UsageRecord.objects.get()
    assert stored.request_id == "req-abc"
    assert (stored.prompt_tokens, stored.completion_tokens, stored.cached_tokens) == (1200, 300, 512)
    assert (stored.ttft_ms, stored.latency_ms, stored.stream) == (830, 3000, True)
    assert stored.occurred_at == datetime(2025, 11, 20, 9, 30, tzinfo=UTC)
    assert stored.api_key.name == "backend"
    assert stored.metadata == {"newapi_quota": "1840"}
    assert stored.cost_source != "reported"


def test_newapi_rows_without_request_id_dedupe_on_their_identity_across_overlapping_exports(account, tmp_path):
    rows = [log_row(id=i, created_at=CREATED + i, prompt_tokens=1000 + i) for i in range(6)]
    # The console renumbers `id` between exports; the identity tuple does not change.
    first = write(tmp_path, "week1.json", json.dumps(rows[:4]))
    second = write(tmp_path, "week2.json", json.dumps([{**r, "id": r["id"] + 1000} for r in rows[2:]]))

    run(first, "--format", "newapi")
    out, _ = run(second, "--format", "newapi")

    assert "2 accepted, 2 duplicates, 0 conflicts" in out
    ids = list(UsageRecord.objects.values_list("request_id", flat=True))
    assert len(ids) == 6 and all(i.startswith("newapi-") for i in ids)


def test_a_console_export_of_calls_the_proxy_recorded_counts_them_once(account, tmp_path):
    proxied = {
        "request_id": "proxy-1",
        "occurred_at": datetime.fromtimestamp(CREATED, UTC).isoformat(),
        "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 1200, "completion_tokens": 300},
        "upstream_request_id": "20251120093000Ab3xYz9Q",
    }
    record_usage(account, validate_records([proxied])[0], source="proxy")
    export = [log_row(request_id="20251120093000Ab3xYz9Q"), log_row(id=902, request_id="20251120093100Zz1", quota=9)]

    out, _ = run(write(tmp_path, "console.json", json.dumps(export)), "--format", "newapi")

    assert "1 accepted, 1 duplicates (1 already recorded by another source), 0 conflicts" in out
    assert sorted(UsageRecord.objects.values_list("request_id", "upstream_request_id")) == [
        ("20251120093100Zz1", "20251120093100Zz1"),
        ("proxy-1", "20251120093000Ab3xYz9Q"),
    ]


def test_newapi_rows_that_are_not_consume_or_error_are_skipped_and_counted(account, tmp_path):
    rows = [log_row(), log_row(type=1, content="top-up"), log_row(type=3), log_row(type=1, created_at=CREATED + 9)]

    out, err = run(write(tmp_path, "logs.jsonl", jsonl(*rows)), "--format", "newapi")

    assert "Read 4 rows" in out and "1 accepted" in out
    assert "3 skipped (1 manage (type 3), 2 top-up (type 1))" in out
    assert err == ""


def test_newapi_error_rows_keep_status_and_cause_from_other(account, tmp_path):
    other = {"error_type": "new_api_error", "error_code": "insufficient_user_quota", "status_code": 403}
    row = log_row(
        type=5,
        content="user quota is not enough",
        prompt_tokens=0,
        completion_tokens=0,
        quota=0,
        other=json.dumps(other),
    )

    run(write(tmp_path, "logs.jsonl", jsonl(row)), "--format", "newapi")

    stored = UsageRecord.objects.get()
    assert (stored.status_code, stored.error_cause) == (403, ErrorCause.INSUFFICIENT_QUOTA)
    assert stored.tokens_source == "none"


def test_a_malformed_other_string_is_a_bad_line_naming_other(account, tmp_path):
    rows = [log_row(other="{model_ratio: 1"), log_row(created_at=CREATED + 1, other=json.dumps({"frt": "fast"}))]
    rows.append(log_row(created_at=CREATED + 2, prompt_tokens="12"))

    out, err = run(write(tmp_path, "logs.jsonl", jsonl(*rows, log_row(created_at=CREATED + 3))), "--format", "newapi")

    problems = err.splitlines()
    assert problems[0].startswith("line 1: other: is not a valid JSON string")
    assert problems[1].startswith("line 2: other.frt:")
    assert problems[2].startswith("line 3: prompt_tokens:")
    assert "1 accepted" in out and "3 rejected" in out


def test_a_pretty_printed_console_api_response_is_read_item_by_item(account, tmp_path, monkeypatch):
    monkeypatch.setattr(JsonDocument, "CHUNK_BYTES", 7)  # every item straddles reads
    items = [log_row(created_at=CREATED + i, model_name=f"模型-{i}", quota=10**i) for i in range(5)]
    items[3]["other"] = "not json"
    response = {"success": True, "message": "", "data": {"page": 1, "page_size": 100, "total": 5, "items": items}}
    path = write(tmp_path, "log-page.json", json.dumps(response, indent=2, ensure_ascii=False))

    out, err = run(path, "--format", "newapi")

    assert err.startswith("index 3: other:")
    assert "Read 5 rows" in out and "4 accepted" in out
    quotas = sorted(int(m["newapi_quota"]) for m in UsageRecord.objects.values_list("metadata", flat=True))
    assert quotas == [1, 10, 100, 10_000]
    assert UsageRecord.objects.filter(model="模型-4").exists()


def test_a_console_response_on_one_line_is_read_as_a_document(account, tmp_path):
    response = {"success": True, "data": {"items": [log_row(), log_row(created_at=CREATED + 1)]}}

    out, _ = run(write(tmp_path, "page.json", json.dumps(response)), "--format", "newapi")

    assert "2 accepted" in out


def test_a_broken_json_array_stores_the_items_before_the_break_and_fails(account, tmp_path):
    content = json.dumps([log_row(), log_row(created_at=CREATED + 1)])[:-5]

    with pytest.raises(CommandError, match="Records before that point are stored"):
        run(write(tmp_path, "logs.json", content), "--format", "newapi")
    assert UsageRecord.objects.count() == 1


def test_a_console_error_response_is_a_clear_command_error(account, tmp_path):
    path = write(tmp_path, "page.json", json.dumps({"success": False, "message": "invalid access token"}, indent=1))

    with pytest.raises(CommandError, match="no `data`"):
        run(path, "--format", "newapi")


@pytest.mark.parametrize("chunk_bytes", [1, 2, 3, 5, 8, 13])
def test_a_json_array_read_in_tiny_chunks_yields_exactly_its_items(chunk_bytes, monkeypatch):
    monkeypatch.setattr(JsonDocument, "CHUNK_BYTES", chunk_bytes)
    items = [1e-07, 12345678901234567890, -0.5, 'é中"\\', True, None, [], {"a": [1, {"b": 2.5e300}]}, 0]
    exact = json.loads(json.dumps(items), parse_float=Decimal)  # numbers in files are read exactly
    for document in (items, {"success": True, "data": {"total": 9, "items": items}}, {"data": items}):
        text = json.dumps(document, ensure_ascii=False, indent=1)

        assert list(JsonDocument(io.BytesIO(text.encode())).log_items()) == exact
