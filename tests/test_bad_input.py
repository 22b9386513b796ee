"""Odd input gets a 4xx that says what is wrong, never a 500: the API, the importer and every page.

Each case here once answered 500 (or crashed the import with a traceback).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.core.signals import request_finished
from django.db import connections
from django.test import Client
from django.urls import reverse

from tests.test_authentication_required import walk
from toki_dashboard.asgi import application
from usage import selectors
from usage.models import TokenScope, UsageRecord
from usage.schemas import validate_records
from usage.services import create_api_token, record_usage

DEEP = 100_000
MB = 1024 * 1024


def deeply_nested(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def token(account) -> str:
    return create_api_token(account=account, name="everything", scopes=list(TokenScope.values))[1]


@pytest.fixture
def api(token) -> Client:
    return Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Bearer {token}")


def some_usage(account) -> None:
    valid, _ = validate_records(
        [
            {
                "request_id": f"r{n}",
                "occurred_at": f"2026-11-2{n}T10:00:00Z",
                "model": "gpt-4o",
                "api_key": "backend",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
            for n in range(3)
        ]
    )
    record_usage(account, valid, source="api")


# --- The ingestion API ---------------------------------------------------------------------


def test_an_instant_before_year_one_in_utc_is_rejected_naming_occurred_at(api, account):
    records = [
        {"request_id": "ancient", "occurred_at": "0001-01-01T00:00:00+01:00", "model": "m"},
        {"request_id": "fine", "occurred_at": "2026-11-20T10:00:00Z", "model": "m"},
    ]

    response = api.post("/api/v1/usage", {"records": records}, content_type="application/json")

    assert response.status_code == 200
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["field"]) for r in body["rejected"]] == [(0, "occurred_at")]


def test_json_nested_a_hundred_thousand_deep_is_a_400(api):
    body = '{"records": [' + deeply_nested() + "]}"

    response = api.post("/api/v1/usage", body, content_type="application/json")

    assert response.status_code == 400
    assert "nested" in response.json()["detail"]


def test_deep_json_on_a_billing_endpoint_is_a_400(api):
    response = api.post("/api/v1/purchases", deeply_nested(), content_type="application/json")

    assert response.status_code == 400


@pytest.mark.parametrize("endpoint", ["/api/v1/usage/records", "/api/v1/usage/summary"])
def test_dates_at_the_end_of_the_calendar_are_a_400_naming_the_parameter(api, account, endpoint):
    response = api.get(endpoint, {"start": "9999-12-31", "end": "9999-12-31", "group_by": "model"})

    assert response.status_code == 400
    assert "start" in response.json()["detail"]


def test_dates_before_any_usage_could_exist_are_a_400(api, account):
    response = api.get("/api/v1/usage/records", {"start": "0001-01-01", "end": "0001-01-02"})

    assert response.status_code == 400


def _close_request_connections(**kwargs: object) -> None:
    # Django's ASGI handler runs the request's sync code in a thread of its own, which opens
    # its own connection. A web process gives it back to its pool at the request's end; this
    # process has no pool (its settings loaded before toki_dashboard.asgi asked for one) and
    # keeps connections for CONN_MAX_AGE, so the finished thread's connection would stay open
    # until the collector freed it, keeping the test database busy at teardown. request_finished
    # is sent in that thread.
    connections.close_all()


async def _post_chunked(
    path: str, chunks: int, chunk: bytes, headers: list[tuple[bytes, bytes]]
) -> tuple[int, Any, int]:
    """POST `chunks` × `chunk` to the site's ASGI application with no Content-Length, as a
    chunked upload arrives; returns the status, the body and how many chunks it read."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        read += 1
        if read > chunks:
            await asyncio.sleep(3600)  # the client is done; only a disconnect would come
        return {"type": "http.request", "body": chunk, "more_body": read < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    request_finished.connect(_close_request_connections, weak=False)
    try:
        await asyncio.wait_for(application(scope, receive, send), timeout=30)
    finally:
        request_finished.disconnect(_close_request_connections)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, read


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_over_10_mb_is_refused_with_413_before_it_is_all_read(token):
    chunks = 300  # 300 MB, were it all read

    status, body, read = asyncio.run(
        _post_chunked(
            "/api/v1/usage",
            chunks,
            b" " * MB,
            [(b"content-type", b"application/json"), (b"authorization", f"Bearer {token}".encode())],
        )
    )

    assert status == 413
    assert "10 MB" in json.loads(body)["detail"]
    assert read <= 12  # stopped at the limit, not after 300 MB


def test_a_cursor_holding_an_instant_outside_the_calendar_is_a_400(api, engineer_client, account):
    cursor = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+14:00|1").decode()

    response = api.get("/api/v1/usage/records", {"start": "2026-11-01", "end": "2026-11-02", "cursor": cursor})

    assert response.status_code == 400
    assert engineer_client.get(reverse("usage:requests"), {"after": cursor}).status_code == 400


# --- The importer ----------------------------------------------------------------------------


def run_import(path: Path, *args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_usage", str(path), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_a_deeply_nested_jsonl_line_is_reported_and_the_rest_imported(tmp_path, account):
    good = {"request_id": "ok", "occurred_at": "2026-11-20T10:00:00Z", "model": "m"}
    path = tmp_path / "usage.jsonl"
    path.write_text(deeply_nested() + "\n" + json.dumps(good) + "\n")

    _, err = run_import(path, "--account", account.slug)

    assert "line 1: " in err and "nested" in err
    assert UsageRecord.objects.filter(request_id="ok").exists()


def test_a_deeply_nested_console_document_is_a_file_error_not_a_crash(tmp_path, account):
    path = tmp_path / "console.json"
    path.write_text("[" + deeply_nested() + "]")

    with pytest.raises(CommandError, match="nested too deeply"):
        run_import(path, "--account", account.slug, "--format", "newapi")


def test_a_console_row_whose_other_field_is_deeply_nested_is_reported(tmp_path, account):
    # `other` is JSON inside a string; 5,000 levels are too deep to read, and the line stays short.
    row = {"type": 2, "created_at": 1_795_000_000, "model_name": "m", "other": deeply_nested(5_000)}
    path = tmp_path / "console.jsonl"
    path.write_text(json.dumps(row) + "\n")

    _, err = run_import(path, "--account", account.slug, "--format", "newapi")

    assert "line 1: other" in err


def test_an_ancient_instant_in_an_import_is_reported_against_its_line(tmp_path, account):
    path = tmp_path / "usage.jsonl"
    path.write_text(json.dumps({"request_id": "a", "occurred_at": "0001-01-01T00:00:00+01:00", "model": "m"}) + "\n")

    _, err = run_import(path, "--account", account.slug)

    assert "line 1: occurred_at" in err


# --- Pages -------------------------------------------------------------------------------------

ANCIENT_PERIOD = {"period": "custom", "start": "0001-01-01", "end": "0001-01-02"}
LAST_DAYS = {"period": "custom", "start": "9999-12-30", "end": "9999-12-31"}


def page_urls(account) -> list[str]:
    """Every page of the site that a GET can open, with real objects for its parameters."""
    record = UsageRecord.objects.filter(account=account).first()
    samples = {
        "usage:model_detail": reverse("usage:model_detail", args=["gpt-4o"]),
        "usage:model_card": reverse("usage:model_card", args=["gpt-4o", "usage"]),
        "usage:request_detail": reverse("usage:request_detail", args=[record.pk]),
    }
    from django.urls import get_resolver

    urls = []
    for endpoint in walk(get_resolver()):
        if endpoint.view_name.startswith(("admin:", "api:")) or endpoint.view_name in ("login", "logout"):
            continue
        urls.append(samples.get(endpoint.view_name, endpoint.url))
    return urls


@pytest.mark.parametrize("query", [ANCIENT_PERIOD, LAST_DAYS], ids=["year-one", "year-9999"])
def test_no_page_answers_500_to_dates_at_the_ends_of_the_calendar(make_user, account, query):
    from toki_dashboard.roles import Role

    some_usage(account)
    client = Client(raise_request_exception=False)
    client.force_login(make_user("root", Role.ADMIN))

    answers = {url: client.get(url, query).status_code for url in page_urls(account)}

    assert len(answers) >= 11
    assert {url: status for url, status in answers.items() if status >= 500} == {}


def test_a_period_outside_the_calendar_says_what_was_shown_instead(engineer_client, account):
    response = engineer_client.get(reverse("usage:models"), ANCIENT_PERIOD)

    assert response.status_code == 200
    assert "2000-01-01" in response.content.decode()


# --- JSON errors on the API, whatever DEBUG is ---------------------------------------------------


@pytest.fixture
def production(settings) -> None:
    settings.DEBUG = False


def test_an_unknown_api_path_is_a_json_404(production, api):
    response = api.get("/api/v1/no-such-thing")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"]


def test_an_unexpected_error_in_the_api_is_a_json_500_that_says_nothing_internal(production, api, account, monkeypatch):
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(selectors, "summary", broken)

    response = api.get("/api/v1/usage/summary", {"start": "2026-11-01", "end": "2026-11-02", "group_by": "model"})

    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert "secret internals" not in response.content.decode()
    assert response.json()["detail"]


def test_a_body_too_large_for_django_is_a_json_413_on_the_api(production, api):
    response = api.generic("POST", "/api/v1/usage", b"x" * (11 * MB + 1), content_type="application/json")

    assert response.status_code == 413
    assert response["Content-Type"].startswith("application/json")


def test_a_session_post_without_csrf_token_is_a_json_403_on_the_api(production, engineer_client):
    engineer_client.handler.enforce_csrf_checks = True

    response = engineer_client.post("/api/v1/usage", {"records": []}, content_type="application/json")

    assert response.status_code in (401, 403)
    assert response["Content-Type"].startswith("application/json")


def test_pages_keep_their_html_error_pages(production, engineer_client, account):
    response = engineer_client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
