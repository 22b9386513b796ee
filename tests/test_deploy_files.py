"""The monitoring files in deploy/ name only metrics /metrics serves, so they keep working."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from usage.models import Account, TokenScope
from usage.services import create_api_token

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
METRIC = re.compile(r"\btoki_[a-z_]+\b")


def served(account: Account) -> set[str]:
    token = create_api_token(account=account, name="prometheus", scopes=[TokenScope.METRICS])[1]
    body = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names |= {f"{family.name}_{suffix}" for suffix in ("total", "bucket", "count", "sum")}
    return names


def test_the_grafana_dashboard_and_the_alert_rules_use_served_metrics(account: Account):
    names = served(account)
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    rules = (DEPLOY / "toki-alerts.yml").read_text()

    used = set(METRIC.findall(expressions)) | set(METRIC.findall(rules))
    # Labelled counters appear once something counted them; their names are declared in usage.metrics.
    declared = {"toki_proxy_requests_total", "toki_ingested_records_total"}
    assert used - names - declared == set()
    assert {"toki_budget_ratio", "toki_wallet_balance", "toki_projected_runout_timestamp_seconds"} <= used
