"""/metrics in the Prometheus text format, parsed with prometheus_client's own parser: every
figure equals what /api/v1/usage/summary (over all time), /api/v1/balance and /api/v1/budgets
say for the same account, and only a token with the `metrics` scope reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from billing.audit import Actor
from billing.budgets.services import BudgetData, create_budget
from tests.billing.conftest import allocate, buy, ingest, record, top_up
from usage.models import Account, TokenScope
from usage.services import create_account, create_api_token


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture
def busy_account(transactional_db, account: Account) -> Account:
    now = timezone.now()
    day = now - timedelta(days=3)
    buy(account, "pro", 50_000, now - timedelta(days=10), now + timedelta(days=20), price="20")
    top_up(account, "t", "12.50", now - timedelta(days=10))
    quota = {"status_code": 429, "error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "x"}}
    ingest(
        account,
        record("a", day, "gpt-4o", 10_000, 2_000, "0.75", metadata={"team": "search"}),
        record("b", day + timedelta(hours=1), "gpt-4o", 40_000, 9_000, "1.25", metadata={"team": "search"}),
        record("c", day + timedelta(hours=2), "deepseek-chat", 3_000, 1_000, None),  # unpriced
        record("d", day + timedelta(hours=3), "gpt-4o", 0, 0, None, **quota),
        record(
            "e",
            now - timedelta(minutes=5),
            "gpt-4o-mini",
            500,
            50,
            "0.0123",
            usage={"prompt_tokens": 500, "completion_tokens": 50, "prompt_tokens_details": {"cached_tokens": 200}},
        ),
    )
    allocate(account, now)
    create_budget(
        account,
        BudgetData(name="Search", amount=Decimal(4), scope="team", target="search", measure="usage_value"),
        Actor.system("tests"),
    )
    return account


def bearer(account: Account, *scopes: str) -> Client:
    return Client(
        HTTP_AUTHORIZATION=f"Bearer {create_api_token(account=account, name='-'.join(scopes), scopes=list(scopes))[1]}"
    )


def test_metrics_equal_the_summary_the_balance_and_the_budgets_of_the_same_account(busy_account: Account):
    api = bearer(busy_account, TokenScope.READ)
    response = bearer(busy_account, TokenScope.METRICS).get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    found = samples(response.content.decode())
    today = timezone.localdate()
    summary = api.get(
        "/api/v1/usage/summary", {"start": "2000-01-01", "end": today.isoformat(), "group_by": "model"}
    ).json()
    balance = api.get("/api/v1/balance").json()
    budgets = api.get("/api/v1/budgets").json()["budgets"]

    assert {row["key"] for row in summary["rows"]} == {"gpt-4o", "deepseek-chat", "gpt-4o-mini"}
    for row in summary["rows"]:
        model = row["key"]
        assert value(found, "toki_usage_value_total", account="acme", model=model, currency="USD") == float(row["cost"])
        assert value(found, "toki_paid_total", account="acme", model=model, currency="USD") == float(row["paid"])
        for kind in ("prompt", "completion", "cached"):
            assert value(found, "toki_tokens_total", account="acme", model=model, kind=kind) == row[f"{kind}_tokens"]
        assert value(found, "toki_requests_total", account="acme", model=model, status_class="error") == row["errors"]
        ok = value(found, "toki_requests_total", account="acme", model=model, status_class="ok")
        assert ok + row["errors"] == row["requests"]
        assert value(found, "toki_unpriced_requests_total", account="acme", model=model) == row["unpriced_requests"]
    total_value = sum(v for (name, _), v in found.items() if name == "toki_usage_value_total")
    assert total_value == pytest.approx(float(summary["total"]["cost"]), abs=1e-9)

    assert value(found, "toki_token_balance", account="acme") == balance["token_balance"]
    assert value(found, "toki_wallet_balance", account="acme", currency="USD") == float(balance["wallet_balance"])
    runout = value(found, "toki_projected_runout_timestamp_seconds", account="acme")
    if balance["projected_runout_at"] is None:
        assert runout is None  # unknown is left out, never written as 0
    else:
        # The API writes milliseconds, the metric keeps the moment's microseconds.
        assert runout == pytest.approx(datetime.fromisoformat(balance["projected_runout_at"]).timestamp(), abs=1e-3)
    (search,) = budgets
    assert value(found, "toki_budget_ratio", account="acme", budget="Search") == float(search["ratio"])
    assert float(search["ratio"]) == 0.5  # 2.00 of 4 USD
    assert value(found, "toki_ingested_records_total", source="api") >= 5


def test_metrics_need_a_token_with_the_metrics_scope_of_that_account(busy_account: Account, admin_client: Client):
    assert Client().get("/metrics").status_code == 401
    assert admin_client.get("/metrics").status_code == 401  # a session is not a scrape token
    assert bearer(busy_account, TokenScope.READ).get("/metrics").status_code == 403
    other = create_account(name="Other", slug="other")
    body = bearer(other, TokenScope.METRICS).get("/metrics").content.decode()
    assert 'account="acme"' not in body


def test_the_proxy_and_alert_counters_are_exposed(busy_account: Account):
    body = bearer(busy_account, TokenScope.METRICS).get("/metrics").content.decode()

    names = {family.name for family in text_string_to_metric_families(body)}
    assert {"toki_proxy_added_latency_seconds", "toki_proxy_budget_refusals"} <= names  # labelled ones: once used
    assert {"toki_alert_deliveries", "toki_alert_firing", "toki_ingested_records"} <= names
    assert "process_cpu_seconds" in names or "process_cpu_seconds_total" in {
        s.name for f in text_string_to_metric_families(body) for s in f.samples
    }


def test_an_empty_prometheus_multiproc_dir_keeps_the_counters_in_the_process_and_writes_no_file(tmp_path: Path):
    """Empty is documented as "per process"; prometheus_client takes the variable being set at
    all for a folder, and wrote each process's files into its working directory."""
    environment = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": "",
        "TOKI_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "toki_dashboard.settings",
        "SECRET_KEY": "a-secret-only-this-test-uses-0123456789",
    }
    count = "import django; django.setup(); from usage import metrics; metrics.record_ingested('api', 3)"

    subprocess.run([sys.executable, "-c", count], cwd=tmp_path, env=environment, check=True, timeout=60)

    assert [path.name for path in tmp_path.iterdir() if path.name != "var"] == []  # no counter_<pid>.db here
