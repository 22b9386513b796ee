"""Writes of the wallet ledger: entries recorded idempotently, reversed by a new entry (never
edited), audited, and followed by a recompute of what they change."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import audit
from billing.audit import Actor
from billing.models import (
    MANUAL_WALLET_KINDS,
    PlanPurchase,
    WalletEntry,
    WalletEntryKind,
)
from billing.services.common import (
    RESERVED_KEY_PREFIX,
    WALLET_FIELDS,
    BillingError,
    check_key,
    digest_of,
    existing_row,
    require_aware,
)
from usage.models import Account


@dataclass
class WalletEntryData:
    """A top-up, refund or adjustment as finance (or a script) records it."""

    kind: str
    amount: Decimal
    currency: str
    occurred_at: datetime
    idempotency_key: str
    note: str = ""

    def digest(self) -> str:
        values = asdict(self)
        values["amount"] = str(self.amount.normalize())
        values["occurred_at"] = self.occurred_at.timestamp()
        return digest_of(values)

    def check(self, account: Account) -> None:
        check_key(self.idempotency_key)
        if self.kind not in MANUAL_WALLET_KINDS:
            raise BillingError(f"kind must be one of {', '.join(MANUAL_WALLET_KINDS)}.")
        if self.currency != account.currency:
            raise BillingError(f"The wallet is kept in {account.currency}; this entry is in {self.currency}.")
        if self.kind in (WalletEntryKind.TOP_UP, WalletEntryKind.REFUND) and self.amount <= 0:
            raise BillingError(f"A {self.kind.replace('_', '-')} amount must be positive.")
        if self.amount == 0:
            raise BillingError("An adjustment of zero changes nothing.")
        require_aware("occurred_at", self.occurred_at)


def post_entry(
    account: Account,
    actor: Actor,
    *,
    kind: str,
    amount: Decimal,
    occurred_at: datetime,
    note: str,
    key: str,
    digest: str = "",
    purchase: PlanPurchase | None = None,
    reverses: WalletEntry | None = None,
) -> WalletEntry:
    return WalletEntry.objects.create(
        account=account,
        kind=kind,
        amount=amount,
        currency=account.currency,
        occurred_at=occurred_at,
        note=note,
        idempotency_key=key,
        request_hash=digest,
        purchase=purchase,
        reverses=reverses,
        created_by=actor.user,
        created_via=actor.label[:200],
    )


def record_wallet_entry(account: Account, data: WalletEntryData, actor: Actor) -> tuple[WalletEntry, bool]:
    """The entry, and whether it was created now (False: a replay of the same request)."""
    data.check(account)
    digest = data.digest()
    if (found := existing_row(WalletEntry, account, data.idempotency_key, digest)) is not None:
        return found, False
    try:
        with transaction.atomic():
            entry = post_entry(
                account,
                actor,
                kind=data.kind,
                amount=data.amount,
                occurred_at=data.occurred_at,
                note=data.note,
                key=data.idempotency_key,
                digest=digest,
            )
            audit.record(actor, "wallet.recorded", entry, account=account, after=audit.snapshot(entry, WALLET_FIELDS))
    except IntegrityError:
        found = existing_row(WalletEntry, account, data.idempotency_key, digest)
        if found is None:
            raise
        return found, False
    return entry, True


def reverse_entry(entry: WalletEntry, actor: Actor, note: str) -> WalletEntry:
    reversal = post_entry(
        entry.account,
        actor,
        kind=WalletEntryKind.ADJUSTMENT,
        amount=-entry.amount,
        occurred_at=timezone.now(),
        note=note,
        key=f"{RESERVED_KEY_PREFIX}reverse:{entry.pk}",
        purchase=entry.purchase,
        reverses=entry,
    )
    audit.record(
        actor, "wallet.reversed", reversal, account=entry.account, after=audit.snapshot(reversal, WALLET_FIELDS)
    )
    return reversal


def reverse_wallet_entry(entry: WalletEntry, actor: Actor, reason: str) -> WalletEntry:
    """Cancel a top-up, refund or adjustment recorded in error with an opposite entry."""
    reason = reason.strip()
    if not reason:
        raise BillingError("Say why the entry is reversed.")
    if entry.kind not in MANUAL_WALLET_KINDS or entry.reverses_id is not None:
        raise BillingError("Only top-ups, refunds and adjustments recorded by people can be reversed.")
    with transaction.atomic():
        if WalletEntry.objects.select_for_update().filter(reverses=entry).exists():
            raise BillingError(f"Wallet entry {entry.pk} was already reversed.")
        return reverse_entry(entry, actor, f"Reversal of entry {entry.pk}: {reason}")
