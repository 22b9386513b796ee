"""Balances read off the TOKI console by people (the `manual` provider)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import transaction

from billing import audit
from billing.audit import Actor
from billing.models import (
    BalanceSnapshot,
    BalanceSource,
)
from billing.services.common import require_aware
from usage.models import Account


def record_manual_balance(
    account: Account,
    *,
    balance: Decimal | None,
    taken_at: datetime,
    actor: Actor,
    note: str = "",
    token_balance: int | None = None,
    source: str = BalanceSource.MANUAL,
) -> BalanceSnapshot:
    """A balance read off the TOKI console by finance (the `manual` provider)."""
    require_aware("taken_at", taken_at)
    with transaction.atomic():
        snapshot = BalanceSnapshot.objects.create(
            account=account,
            taken_at=taken_at,
            balance=balance,
            currency=account.currency,
            token_balance=token_balance,
            raw={"balance": None if balance is None else str(balance), "token_balance": token_balance},
            source=source,
            note=note,
            created_by=actor.user,
        )
        audit.record(
            actor,
            "balance.recorded",
            snapshot,
            account=account,
            after=audit.snapshot(snapshot, ("taken_at", "balance", "currency", "token_balance", "note")),
        )
    return snapshot
