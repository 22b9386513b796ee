"""Writes of the billing app: plans, purchases, wallet entries, manual balances.

Nothing is edited or deleted: a purchase is voided (who, when, why) and a wallet
entry is reversed by a new entry. Every change leaves an AuditEvent. Purchases
and wallet entries carry an idempotency key, unique per account: the same key with
the same content gives back the stored row, with other content it is refused.
Anything that changes what allocations should be asks for a recompute from the
earliest moment it affects (`billing.recompute`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import audit
from billing.audit import Actor
from billing.models import (
    MANUAL_WALLET_KINDS,
    BalanceSnapshot,
    BalanceSource,
    PlanPurchase,
    TokenBasis,
    TokenPlan,
    WalletEntry,
    WalletEntryKind,
)
from billing.recompute import request_recompute
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


def _digest(values: dict[str, Any]) -> str:
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _check_key(key: str) -> None:
    if not key or len(key) > 200:
        raise BillingError("idempotency_key must be 1 to 200 characters.")
    if key.startswith(RESERVED_KEY_PREFIX):
        raise BillingError(f"idempotency keys starting with {RESERVED_KEY_PREFIX!r} are reserved.")


def _aware(name: str, value: datetime) -> None:
    if timezone.is_naive(value):
        raise BillingError(f"{name} needs a time zone offset.")


# --- Plans ---------------------------------------------------------------------------


def save_plan(plan: TokenPlan, actor: Actor) -> TokenPlan:
    """Create or change a catalogue entry (a template for purchases; grants never change with it)."""
    before = None
    if plan.pk is not None:
        previous = TokenPlan.objects.get(pk=plan.pk)
        before = audit.snapshot(previous, PLAN_FIELDS)
    plan.full_clean()
    with transaction.atomic():
        plan.save()
        audit.record(
            actor,
            "plan.changed" if before else "plan.created",
            plan,
            account=plan.account,
            before=before,
            after=audit.snapshot(plan, PLAN_FIELDS),
        )
    return plan


def _plan_for(account: Account, purchase: PurchaseData, actor: Actor) -> TokenPlan:
    plan = TokenPlan.objects.filter(account=account, name=purchase.plan).first()
    if plan is not None:
        return plan
    days = max(1, math.ceil((purchase.expires_at - purchase.effective_at) / timedelta(days=1)))
    plan = TokenPlan(
        account=account,
        name=purchase.plan,
        tokens=purchase.tokens,
        price=purchase.price,
        currency=purchase.currency,
        validity_days=days,
        allowed_models=list(purchase.models),
        priority=purchase.priority,
        token_basis=purchase.token_basis or TokenBasis.TOTAL,
    )
    try:
        with transaction.atomic():
            return save_plan(plan, actor)
    except (IntegrityError, ValidationError):
        # Added by a concurrent purchase of the same new plan.
        found = TokenPlan.objects.filter(account=account, name=purchase.plan).first()
        if found is None:
            raise
        return found


# --- Purchases -----------------------------------------------------------------------


@dataclass
class PurchaseData:
    """A plan purchase as finance (or a script) records it."""

    plan: str
    tokens: int
    price: Decimal
    currency: str
    effective_at: datetime
    expires_at: datetime
    idempotency_key: str
    models: list[str] = field(default_factory=list)
    priority: int = 0
    paid_from_wallet: bool = False
    token_basis: str | None = None  # None: the catalogue plan's, else prompt + completion

    def digest(self) -> str:
        values = asdict(self)
        values["price"] = str(self.price.normalize())
        values["effective_at"] = self.effective_at.timestamp()
        values["expires_at"] = self.expires_at.timestamp()
        return _digest(values)

    def check(self, account: Account) -> None:
        _check_key(self.idempotency_key)
        if not self.plan.strip() or len(self.plan) > 200:
            raise BillingError("plan must be a name of 1 to 200 characters.")
        if not 0 < self.tokens <= MAX_TOKENS:
            raise BillingError(f"tokens must be between 1 and {MAX_TOKENS:,}.")
        if self.price < 0:
            raise BillingError("price cannot be negative.")
        _aware("effective_at", self.effective_at)
        _aware("expires_at", self.expires_at)
        if self.expires_at <= self.effective_at:
            raise BillingError("expires_at must be after effective_at.")
        if self.paid_from_wallet and self.currency != account.currency:
            raise BillingError(
                f"a purchase paid from the wallet must be in the wallet's currency ({account.currency})."
            )
        if self.token_basis is not None and self.token_basis not in TokenBasis.values:
            raise BillingError(f"token_basis must be one of {', '.join(TokenBasis.values)}.")


def _existing(model: type[PlanPurchase] | type[WalletEntry], account: Account, key: str, digest: str) -> Any:
    found = model.objects.filter(account=account, idempotency_key=key).first()
    if found is not None and found.request_hash != digest:
        raise IdempotencyConflict(f"idempotency_key {key!r} was already used with different content.")
    return found


def record_purchase(account: Account, data: PurchaseData, actor: Actor) -> tuple[PlanPurchase, bool]:
    """The purchase, and whether it was created now (False: a replay of the same request)."""
    data.check(account)
    digest = data.digest()
    if (found := _existing(PlanPurchase, account, data.idempotency_key, digest)) is not None:
        return found, False
    try:
        with transaction.atomic():
            plan = _plan_for(account, data, actor)
            purchase = PlanPurchase.objects.create(
                account=account,
                plan=plan,
                name=plan.name,
                tokens=data.tokens,
                price=data.price,
                currency=data.currency,
                effective_at=data.effective_at,
                expires_at=data.expires_at,
                allowed_models=list(data.models),
                priority=data.priority,
                token_basis=data.token_basis or plan.token_basis,
                paid_from_wallet=data.paid_from_wallet,
                idempotency_key=data.idempotency_key,
                request_hash=digest,
                created_by=actor.user,
                created_via=actor.label[:200],
            )
            if purchase.paid_from_wallet and purchase.price:
                _post(
                    account,
                    actor,
                    kind=WalletEntryKind.PLAN_PURCHASE,
                    amount=-purchase.price,
                    occurred_at=purchase.effective_at,
                    note=f"Plan purchase: {purchase.name}",
                    key=f"{RESERVED_KEY_PREFIX}purchase:{purchase.pk}",
                    purchase=purchase,
                )
            audit.record(
                actor, "purchase.recorded", purchase, account=account, after=audit.snapshot(purchase, PURCHASE_FIELDS)
            )
            request_recompute(account, purchase.effective_at, f"purchase {purchase.pk} recorded")
    except IntegrityError:
        # The same key recorded concurrently: answer as a replay (or a conflict).
        found = _existing(PlanPurchase, account, data.idempotency_key, digest)
        if found is None:
            raise
        return found, False
    return purchase, True


def void_purchase(purchase: PlanPurchase, actor: Actor, reason: str) -> PlanPurchase:
    """Take a purchase out of every balance from its start; a wallet payment is reversed."""
    reason = reason.strip()
    if not reason:
        raise BillingError("Say why the purchase is voided.")
    with transaction.atomic():
        purchase = PlanPurchase.objects.select_for_update().get(pk=purchase.pk)
        if purchase.voided_at is not None:
            raise BillingError(f"Purchase {purchase.pk} was already voided on {purchase.voided_at:%Y-%m-%d %H:%M}.")
        before = audit.snapshot(purchase, PURCHASE_FIELDS)
        purchase.voided_at = timezone.now()
        purchase.voided_by = actor.user
        purchase.voided_via = actor.label[:200]
        purchase.void_reason = reason
        purchase.save(update_fields=["voided_at", "voided_by", "voided_via", "void_reason"])
        for payment in WalletEntry.objects.filter(purchase=purchase, kind=WalletEntryKind.PLAN_PURCHASE):
            _reverse(payment, actor, f"Purchase voided: {reason}")
        audit.record(
            actor,
            "purchase.voided",
            purchase,
            account=purchase.account,
            before=before,
            after=audit.snapshot(purchase, PURCHASE_FIELDS),
        )
        request_recompute(purchase.account, purchase.effective_at, f"purchase {purchase.pk} voided")
    return purchase


# --- Wallet ----------------------------------------------------------------------------


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
        return _digest(values)

    def check(self, account: Account) -> None:
        _check_key(self.idempotency_key)
        if self.kind not in MANUAL_WALLET_KINDS:
            raise BillingError(f"kind must be one of {', '.join(MANUAL_WALLET_KINDS)}.")
        if self.currency != account.currency:
            raise BillingError(f"The wallet is kept in {account.currency}; this entry is in {self.currency}.")
        if self.kind in (WalletEntryKind.TOP_UP, WalletEntryKind.REFUND) and self.amount <= 0:
            raise BillingError(f"A {self.kind.replace('_', '-')} amount must be positive.")
        if self.amount == 0:
            raise BillingError("An adjustment of zero changes nothing.")
        _aware("occurred_at", self.occurred_at)


def _post(
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
    if (found := _existing(WalletEntry, account, data.idempotency_key, digest)) is not None:
        return found, False
    try:
        with transaction.atomic():
            entry = _post(
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
        found = _existing(WalletEntry, account, data.idempotency_key, digest)
        if found is None:
            raise
        return found, False
    return entry, True


def _reverse(entry: WalletEntry, actor: Actor, note: str) -> WalletEntry:
    reversal = _post(
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
        return _reverse(entry, actor, f"Reversal of entry {entry.pk}: {reason}")


# --- Balances reported by people -----------------------------------------------------


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
    _aware("taken_at", taken_at)
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
