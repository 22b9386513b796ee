"""No secret in any log: the product runs a scenario with known secrets (the proxy under a real
uvicorn server, the API, a sync against the fake console, an import and alerts whose email
fails), every log record of every logger is captured at every level, tracebacks included,
and none of the secrets appears in them.

DEBUG is on and every logger is turned down to DEBUG (SQL with its parameters, httpx's
request lines, django-ninja's "unexpected auth" line), so the scenario logs all it can.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.utils import timezone
from openai import OpenAI

from billing import alerts, sync
from billing.models import AlertKind, AlertRule
from billing.providers import ProviderUnavailable
from tests.billing.fake_console import ACCESS_TOKEN, USER_ID, FakeConsole, LogRow
from tests.members import members_with_emails
from tests.proxy.conftest import ServerThread
from toki_dashboard.asgi import application
from usage.models import Account, Provider, TokenScope
from usage.proxy.simulator import Simulator
from usage.services import create_account, create_api_token

UPSTREAM_KEY = "sk-scenario-" + secrets.token_urlsafe(24)
QUERY_SECRET = secrets.token_hex(16)
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(16)
MESSAGES = [{"role": "user", "content": "Hello"}]


class Everything(logging.Handler):
    """Every record any logger handles, formatted with its traceback and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr({k: str(v) for k, v in vars(record).items()}))


@pytest.fixture
def captured(monkeypatch) -> Iterator[Everything]:
    everything = Everything()
    real_handle = logging.Logger.handle

    def handle(logger: logging.Logger, record: logging.LogRecord) -> None:
        everything.handle(record)  # before any logger's own filters, propagation or handlers
        real_handle(logger, record)

    loggers = [logging.root, *(x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger))]
    levels = {logger: logger.level for logger in loggers}
    monkeypatch.setattr(logging.Logger, "handle", handle)
    logging.disable(logging.NOTSET)
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    try:
        yield everything
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)


@pytest.fixture
def upstream() -> Iterator[ServerThread]:
    server = ServerThread(Simulator()).start()
    yield server
    server.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_proxy(account: Account, token: str) -> None:
    server = ServerThread(application).start()
    try:
        base = f"{server.url}/proxy/{account.slug}/v1"
        client = OpenAI(base_url=base, api_key=UPSTREAM_KEY, max_retries=0, default_headers={"X-Toki-Token": token})
        client.chat.completions.create(model="sim-gpt", messages=MESSAGES)
        headers = {"Authorization": f"Bearer {UPSTREAM_KEY}", "X-Toki-Token": token}
        # A stream the upstream cuts off, called with a key in its query string.
        body = {"model": "sim-drop", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", f"{base}/chat/completions?key={QUERY_SECRET}", json=body, headers=headers) as answer:
            try:
                for _ in answer.iter_bytes():
                    pass
            except httpx.HTTPError:
                pass  # the caller sees the stream cut off, as the upstream cut it
        # A record that cannot be stored (a dead letter), a refused body, a path that escapes.
        httpx.post(f"{base}/chat/completions", content=b'{"model": "sim-\\u0000"}', headers=headers)
        httpx.post(f"{base}/chat/completions", content=b"x" * 2048, headers=headers)
        httpx.get(f"{base}/../../internal?token={QUERY_SECRET}", headers=headers)
        runtime = application.proxy._runtime  # type: ignore[attr-defined]
        server.run(runtime.recorder.flush())
    finally:
        server.stop()
        connections.close_all()


def run_api(account: Account, token: str) -> None:
    client = Client()
    record = {
        "request_id": "api-1",
        "occurred_at": (timezone.now() - timedelta(hours=1)).isoformat(),
        "model": "gpt-4o",
        "api_key": UPSTREAM_KEY,
        "usage": {"prompt_tokens": 10, "completion_tokens": 2},
    }
    body = json.dumps({"records": [record, record | {"request_id": "api-2", "model": 7}]})
    client.post("/api/v1/usage", body, content_type="application/json", HTTP_AUTHORIZATION=f"Token {token}")
    client.post("/api/v1/usage", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    client.get("/api/v1/usage/summary", {"start": "x", "token": token}, HTTP_AUTHORIZATION=f"Bearer {token}")


def run_sync(account: Account, console: FakeConsole) -> None:
    account.provider = Provider.NEWAPI_CONSOLE
    account.base_url = console.base_url
    account.set_credentials({"access_token": ACCESS_TOKEN, "user_id": str(USER_ID)})
    account.save()
    now = int(timezone.now().timestamp())
    console.add_logs(LogRow(created_at=now - 60, model_name="gpt-4o", prompt_tokens=5, completion_tokens=1, quota=9))
    sync.sync_account(account)
    console.fail("/api/user/self", "echo_token")
    sync.sync_account(account)
    console.fail("/api/status", "500")
    with pytest.raises(ProviderUnavailable):  # raised for the task to retry later
        sync.sync_account(account)


def run_import(account: Account, tmp_path: Path) -> None:
    path = tmp_path / "usage.jsonl"
    good = {"request_id": "imp-1", "occurred_at": "2026-11-20T10:00:00Z", "model": "gpt-4o", "api_key": UPSTREAM_KEY}
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"request_id": "imp-2", "stream": "yes"}) + "\n")
    call_command("import_usage", str(path), "--account", account.slug, stdout=io.StringIO(), stderr=io.StringIO())


def run_alerts(account: Account, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _closed_port(), 2
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "alerts", SMTP_PASSWORD
    AlertRule.objects.create(
        account=account,
        name="Wallet low",
        kind=AlertKind.WALLET_BELOW,
        threshold=10,
        recipients=members_with_emails(account, ["ops@example.com"]),
    )
    alerts.evaluate_account(account)


def test_a_scenario_with_known_secrets_logs_none_of_them(transactional_db, settings, captured, upstream, tmp_path):
    settings.DEBUG = True
    settings.PROXY_REQUIRE_TOKEN = True
    settings.PROXY_MAX_BODY_BYTES = 1024
    settings.TOKI_PROXY_SPOOL_DIR = tmp_path / "spool"
    account = create_account(name="Acme", slug="acme", base_url=f"{upstream.url}/v1")
    token = create_api_token(account=account, name="everything", scopes=list(TokenScope.values))[1]

    run_proxy(account, token)
    run_api(account, token)
    with FakeConsole() as console:
        run_sync(account, console)
    run_import(account, tmp_path)
    run_alerts(account, settings)

    text = "\n".join(captured.lines)
    assert len(captured.lines) > 100  # the scenario did log: SQL, requests, warnings, errors
    assert "upstream broke off" in text and "Unexpected auth" in text and "alert delivery" in text
    leaks = {
        name: text.count(value)
        for name, value in {
            "upstream key": UPSTREAM_KEY,
            "dashboard API token": token,
            "query-string secret": QUERY_SECRET,
            "console access token": ACCESS_TOKEN,
            "SMTP password": SMTP_PASSWORD,
        }.items()
    }
    assert leaks == dict.fromkeys(leaks, 0)
