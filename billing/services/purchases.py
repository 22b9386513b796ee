"""Writes of the plan catalogue and of purchases: recorded idempotently, voided (never deleted),
audited, and followed by a recompute of what they change."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing import audit
from billing.audit import Actor
from billing.models import (
    PlanPurchase,
    TokenBasis,
    TokenPlan,
    WalletEntry,
    WalletEntryKind,
)
from billing.recompute import request_recompute
from billing.services.common import (
    MAX_TOKENS,
    PLAN_FIELDS,
    PURCHASE_FIELDS,
    RESERVED_KEY_PREFIX,
    BillingError,
    check_key,
    digest_of,
    existing_row,
    require_aware,
)
from billing.services.wallet import post_entry, reverse_entry
from usage.models import Account


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
        return digest_of(values)

    def check(self, account: Account) -> None:
        check_key(self.idempotency_key)
        if not self.plan.strip() or len(self.plan) > 200:
            raise BillingError("plan must be a name of 1 to 200 characters.")
        if not 0 < self.tokens <= MAX_TOKENS:
            raise BillingError(f"tokens must be between 1 and {MAX_TOKENS:,}.")
        if self.price < 0:
            raise BillingError("price cannot be negative.")
        require_aware("effective_at", self.effective_at)
        require_aware("expires_at", self.expires_at)
        if self.expires_at <= self.effective_at:
            raise BillingError("expires_at must be after effective_at.")
        if self.paid_from_wallet and self.currency != account.currency:
            raise BillingError(
                f"a purchase paid from the wallet must be in the wallet's currency ({account.currency})."
            )
        if self.token_basis is not None and self.token_basis not in TokenBasis.values:
            raise BillingError(f"token_basis must be one of {', '.join(TokenBasis.values)}.")


def record_purchase(account: Account, data: PurchaseData, actor: Actor) -> tuple[PlanPurchase, bool]:
    """The purchase, and whether it was created now (False: a replay of the same request)."""
    data.check(account)
    digest = data.digest()
    if (found := existing_row(PlanPurchase, account, data.idempotency_key, digest)) is not None:
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
                post_entry(
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
        found = existing_row(PlanPurchase, account, data.idempotency_key, digest)
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
            reverse_entry(payment, actor, f"Purchase voided: {reason}")
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
