"""What every billing write shares: its errors, the idempotency digest and the checks of keys and instants."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from django.utils import timezone

from billing.models import (
    PlanPurchase,
    WalletEntry,
)
from usage.models import Account

MAX_TOKENS = 10**15
RESERVED_KEY_PREFIX = "sys:"  # keys the application gives its own ledger entries
PURCHASE_FIELDS = (
    "plan",
    "name",
    "tokens",
    "price",
    "currency",
    "effective_at",
    "expires_at",
    "allowed_models",
    "priority",
    "token_basis",
    "paid_from_wallet",
    "idempotency_key",
    "voided_at",
    "voided_by",
    "void_reason",
)
WALLET_FIELDS = (
    "kind",
    "amount",
    "currency",
    "occurred_at",
    "note",
    "idempotency_key",
    "purchase",
    "reverses",
    "usage_day",
)
PLAN_FIELDS = ("name", "tokens", "price", "currency", "validity_days", "allowed_models", "priority", "token_basis")


class BillingError(ValueError):
    """A request that cannot be recorded as it is; the message says why."""


class IdempotencyConflict(BillingError):
    """The idempotency key was used before for different content."""


def digest_of(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_key(key: str) -> None:
    if not key or len(key) > 200:
        raise BillingError("idempotency_key must be 1 to 200 characters.")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise BillingError(f"idempotency keys starting with {RESERVED_KEY_PREFIX!r} are reserved.")


def require_aware(name: str, value: datetime) -> None:
    if timezone.is_naive(value):
        raise BillingError(f"{name} needs a time zone offset.")


def existing_row(model: type[PlanPurchase] | type[WalletEntry], account: Account, key: str, digest: str) -> Any:
    found = model.objects.filter(account=account, idempotency_key=key).first()
    if found is not None and found.request_hash != digest:
        raise IdempotencyConflict(f"idempotency_key {key!r} was already used with different content.")
    return found
