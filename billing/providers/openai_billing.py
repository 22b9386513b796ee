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
from billing.providers.errors import BadAnswer
from billing.providers.http import checked, get_json

CENTS = Decimal(100)


def _number(body: dict[str, Any], name: str, where: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise BadAnswer(f"{where} has no number {name!r}")
    return Decimal(value)


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
