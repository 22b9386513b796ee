"""Webhooks: a signed JSON POST per notification.

The body (`payload`) has a stable schema: `event` (alert.firing, alert.escalated,
alert.reminder, alert.resolved or test), `account` (slug), `rule`, `severity`, `value`,
`threshold` (decimal strings or null), `message`, `dashboard_url` and `occurred_at`
(ISO 8601, UTC), plus `tier`, `tiers` and `budget` (null unless the rule is a budget's).
The keys and the codes (`event`, `severity`) are English whatever the channel's language;
`message`, written for people, is in the channel's language (`AlertChannel.language`).
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

from billing import alert_texts
from billing.models import AlertChannel, AlertNotification
from billing.notify.base import Attempt
from billing.notify.email import page_url, summary_of

USER_AGENT = "TOKI-Dashboard-Webhook/1"


def _decimal(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


def payload(notification: AlertNotification, language: str | None = None) -> dict[str, Any]:
    """The body's fields; `message` in `language` (default: the site's)."""
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
        "message": summary_of(notification, alert_texts.supported(language)),
        "dashboard_url": page_url(tuple(details.get("page") or ("billing:alerts",)), notification.account),
        "occurred_at": notification.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tier": notification.tier,
        "tiers": details.get("tiers", 0),
        "budget": budget,
    }


def body_of(notification: AlertNotification, language: str | None = None) -> bytes:
    return json.dumps(payload(notification, language), separators=(",", ":"), ensure_ascii=False).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def send(channel: AlertChannel, notification: AlertNotification) -> Attempt:
    body = body_of(notification, channel.language)
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
