"""Webhooks: a signed JSON POST per notification.

The body (`payload`) has a stable schema: `event` (alert.firing, alert.escalated,
alert.reminder, alert.resolved or test), `account` (slug), `rule`, `severity`, `value`,
`threshold` (decimal strings or null), `message`, `dashboard_url` and `occurred_at`
(ISO 8601, UTC), plus `tier`, `tiers` and `budget` (null unless the rule is a budget's).
`X-Toki-Timestamp` is the unix time of the attempt, and `X-Toki-Signature` is
`sha256=` + the hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the channel's secret:
a receiver recomputes it over the raw body and refuses stale timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC
from decimal import Decimal
from typing import Any

import httpx
from django.conf import settings

from billing.models import AlertChannel, AlertNotification
from billing.notify.base import Attempt
from billing.notify.email import page_url

USER_AGENT = "TOKI-Dashboard-Webhook/1"


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def payload(notification: AlertNotification) -> dict[str, Any]:
    rule = notification.rule
    details = notification.details or {}
    budget = rule.budget.name if rule is not None and rule.budget is not None else None
    return {
        "event": notification.event,
        "account": notification.account.slug,
        "rule": rule.name if rule is not None else None,
        "severity": notification.severity,
        "value": _decimal(notification.value),
        "threshold": _decimal(notification.threshold),
        "message": details.get("summary") or notification.subject,
        "dashboard_url": page_url(tuple(details.get("page") or ("billing:alerts",)), notification.account),
        "occurred_at": notification.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tier": notification.tier,
        "tiers": details.get("tiers", 0),
        "budget": budget,
    }


def body_of(notification: AlertNotification) -> bytes:
    return json.dumps(payload(notification), separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send(channel: AlertChannel, notification: AlertNotification) -> Attempt:
    body = body_of(notification)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Toki-Timestamp": timestamp,
        "X-Toki-Event": notification.event,
    }
    if channel.secret:
        headers["X-Toki-Signature"] = signature(channel.secret, timestamp, body)
    try:
        response = httpx.post(
            channel.url, content=body, headers=headers, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS
        )
    except httpx.HTTPError as exc:
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return Attempt(ok=True, response_code=response.status_code)
    return Attempt(
        ok=False, response_code=response.status_code, error=f"HTTP {response.status_code}: {response.text[:300]}"
    )
