"""`openai_billing`: the OpenAI-style billing endpoints many relays keep (README "Billing and provider sync").

`GET {base}/dashboard/billing/subscription` gives `hard_limit_usd`, and
`GET {base}/dashboard/billing/usage` gives `total_usage` in cents over the key's
lifetime (date parameters are ignored but sent, as clients do). Balance =
hard_limit_usd − total_usage / 100, in USD. Errors may come as HTTP 200 with an
`error` object.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from billing.providers.base import Adapter, BalanceReading, Connection
from billing.providers.errors import BadAnswer, CredentialsRejected, ProviderUnavailable
from billing.providers.http import get_json
from usage.errors import classify_error
from usage.models import ErrorCause

CENTS = Decimal(100)
REJECTED_CAUSES = {ErrorCause.INVALID_API_KEY, ErrorCause.KEY_DISABLED}


def _number(body: dict[str, Any], name: str, where: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BadAnswer(f"{where} has no number {name!r}")
    return Decimal(value)


def checked(body: Any, where: str, expected_object: str) -> dict[str, Any]:
    """The answer as an object, unless it is an OpenAI-style `error` or not the object expected."""
    if not isinstance(body, dict):
        raise BadAnswer(f"{where} did not answer with a JSON object")
    error = body.get("error")
    if error not in (None, ""):
        details = error if isinstance(error, dict) else {"message": str(error)}
        error_type, code = str(details.get("type") or ""), str(details.get("code") or "")
        message = str(details.get("message") or "")[:300]
        reason = message or code or error_type or "no message"
        cause = classify_error(200, error_type, code, message)
        if cause in REJECTED_CAUSES:
            raise CredentialsRejected(f"{where} refused the key: {reason}")
        if cause == ErrorCause.RATE_LIMITED:
            raise ProviderUnavailable(f"{where} is rate limited: {reason}")
        raise BadAnswer(f"{where} answered an error: {reason}")
    if body.get("object") not in (None, expected_object):
        raise BadAnswer(f"{where} answered object {body.get('object')!r}, not {expected_object!r}")
    return body


class OpenAIBilling(Adapter):
    name = "openai_billing"

    def _get(self, connection: Connection, path: str, expected: str, **params: str) -> dict[str, Any]:
        key = connection.credential("api_key")
        url = connection.base_url.rstrip("/") + path
        body = get_json(
            connection.client, url, headers={"Authorization": f"Bearer {key}"}, params=params, exact_numbers=True
        )
        return checked(body, path, expected)

    def balance(self, connection: Connection) -> BalanceReading:
        subscription = self._get(connection, "/dashboard/billing/subscription", "billing_subscription")
        today = timezone.now().date()
        usage = self._get(
            connection,
            "/dashboard/billing/usage",
            "list",
            start_date=(today - timedelta(days=99)).isoformat(),
            end_date=(today + timedelta(days=1)).isoformat(),
        )
        limit = _number(subscription, "hard_limit_usd", "/dashboard/billing/subscription")
        used = _number(usage, "total_usage", "/dashboard/billing/usage") / CENTS
        return BalanceReading(
            balance=limit - used,
            currency="USD",
            used=used,
            raw={"subscription": subscription, "usage": usage},
        )
