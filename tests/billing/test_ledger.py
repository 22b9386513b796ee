"""Purchases and wallet entries: idempotency keys, voids and reversals instead of edits, the audit trail."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing import selectors, services
from billing.models import AuditEvent, PlanPurchase, RecomputeRequest, TokenPlan, WalletEntry, WalletEntryKind
from billing.services import BillingError, IdempotencyConflict, PurchaseData, WalletEntryData
from tests.billing.conftest import FINANCE, at, buy, top_up


def purchase(**changes) -> PurchaseData:
    values = {
        "plan": "Pro",
        "tokens": 1_000_000,
        "price": Decimal("20.00"),
        "currency": "USD",
        "effective_at": at(1),
        "expires_at": at(31),
        "idempotency_key": "po-1",
    }
    return PurchaseData(**(values | changes))


def entry(**changes) -> WalletEntryData:
    values = {
        "kind": "top_up",
        "amount": Decimal("50"),
        "currency": "USD",
        "occurred_at": at(2),
        "idempotency_key": "tu-1",
    }
    return WalletEntryData(**(values | changes))


def test_a_replayed_purchase_gives_back_the_stored_one_and_changes_nothing(account):
    first, created = services.record_purchase(account, purchase(), FINANCE)
    events = AuditEvent.objects.count()

    again, created_again = services.record_purchase(account, purchase(price=Decimal("20.000")), FINANCE)

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert PlanPurchase.objects.count() == 1
    assert AuditEvent.objects.count() == events


def test_the_same_key_with_other_content_is_refused_and_the_stored_purchase_kept(account):
    services.record_purchase(account, purchase(), FINANCE)

    with pytest.raises(IdempotencyConflict):
        services.record_purchase(account, purchase(tokens=2_000_000), FINANCE)

    assert PlanPurchase.objects.get().tokens == 1_000_000


def test_keys_are_per_account(account):
    from usage.services import create_account

    other = create_account(name="Other", slug="other")
    services.record_purchase(account, purchase(), FINANCE)

    _, created = services.record_purchase(other, purchase(), FINANCE)

    assert created


def test_an_unknown_plan_joins_the_catalogue_once(account):
    services.record_purchase(account, purchase(), FINANCE)
    services.record_purchase(account, purchase(idempotency_key="po-2", tokens=5), FINANCE)

    plan = TokenPlan.objects.get(account=account)
    assert (plan.name, plan.tokens, plan.validity_days) == ("Pro", 1_000_000, 30)
    assert PlanPurchase.objects.filter(plan=plan).count() == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tokens": 0}, "tokens"),
        ({"expires_at": at(1)}, "after effective_at"),
        ({"price": Decimal("-1")}, "negative"),
        ({"idempotency_key": "sys:purchase:1"}, "reserved"),
        ({"paid_from_wallet": True, "currency": "EUR"}, "wallet's currency"),
        ({"token_basis": "everything"}, "token_basis"),
    ],
)
def test_invalid_purchases_are_refused_with_the_reason(account, changes, message):
    with pytest.raises(BillingError, match=message):
        services.record_purchase(account, purchase(**changes), FINANCE)
    assert not PlanPurchase.objects.exists()


def test_a_purchase_asks_for_allocations_to_be_recomputed_from_its_start(account):
    services.record_purchase(account, purchase(effective_at=at(5)), FINANCE)

    assert list(RecomputeRequest.objects.values_list("from_time", flat=True)) == [at(5)]


def test_paying_from_the_wallet_debits_it_and_voiding_credits_it_back(account):
    top_up(account, "tu", "100", at(1))
    bought, _ = services.record_purchase(account, purchase(paid_from_wallet=True), FINANCE)
    assert selectors.wallet_balance(account) == Decimal("80")

    services.void_purchase(bought, FINANCE, "bought by mistake")

    assert selectors.wallet_balance(account) == Decimal("100")
    reversal = WalletEntry.objects.get(reverses__kind=WalletEntryKind.PLAN_PURCHASE)
    assert (reversal.kind, reversal.amount, reversal.purchase_id) == ("adjustment", Decimal("20"), bought.pk)
    bought.refresh_from_db()
    assert bought.voided_at is not None and bought.void_reason == "bought by mistake"
    assert bought.voided_via == "tests"


def test_a_void_needs_a_reason_and_happens_once(account):
    bought, _ = services.record_purchase(account, purchase(), FINANCE)

    with pytest.raises(BillingError, match="why"):
        services.void_purchase(bought, FINANCE, "  ")
    services.void_purchase(bought, FINANCE, "wrong plan")
    with pytest.raises(BillingError, match="already voided"):
        services.void_purchase(bought, FINANCE, "again")

    assert AuditEvent.objects.filter(action="purchase.voided").count() == 1


def test_a_replayed_wallet_entry_is_stored_once_and_other_content_is_refused(account):
    first, created = services.record_wallet_entry(account, entry(), FINANCE)
    again, created_again = services.record_wallet_entry(account, entry(amount=Decimal("50.00")), FINANCE)

    assert (created, created_again, again.pk) == (True, False, first.pk)
    with pytest.raises(IdempotencyConflict):
        services.record_wallet_entry(account, entry(amount=Decimal("60")), FINANCE)
    assert selectors.wallet_balance(account) == Decimal("50")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": Decimal("-5")}, "positive"),
        ({"kind": "refund", "amount": Decimal("0")}, "positive"),
        ({"kind": "adjustment", "amount": Decimal("0")}, "zero"),
        ({"kind": "usage_charge"}, "kind"),
        ({"kind": "plan_purchase"}, "kind"),
        ({"currency": "EUR"}, "kept in USD"),
    ],
)
def test_invalid_wallet_entries_are_refused(account, changes, message):
    with pytest.raises(BillingError, match=message):
        services.record_wallet_entry(account, entry(**changes), FINANCE)
    assert not WalletEntry.objects.exists()


def test_an_entry_recorded_in_error_is_reversed_once_by_an_opposite_entry(account):
    mistake = WalletEntry.objects.get(pk=top_up(account, "tu", "70", at(3)))

    reversal = services.reverse_wallet_entry(mistake, FINANCE, "wrong account")

    assert (reversal.kind, reversal.amount, reversal.reverses_id) == ("adjustment", Decimal("-70"), mistake.pk)
    assert selectors.wallet_balance(account) == 0
    with pytest.raises(BillingError, match="already reversed"):
        services.reverse_wallet_entry(mistake, FINANCE, "twice")
    with pytest.raises(BillingError, match="Only top-ups"):
        services.reverse_wallet_entry(reversal, FINANCE, "reverse the reversal")


def test_purchase_payments_are_corrected_by_voiding_the_purchase_not_by_hand(account):
    buy(account, "po", 100, at(1), at(5), paid_from_wallet=True)

    payment = WalletEntry.objects.get(kind=WalletEntryKind.PLAN_PURCHASE)
    with pytest.raises(BillingError, match="Only top-ups"):
        services.reverse_wallet_entry(payment, FINANCE, "by hand")


def test_the_audit_trail_says_who_did_what_when(account, make_user):
    from billing.audit import Actor

    fiona = make_user("fiona")
    bought, _ = services.record_purchase(account, purchase(), Actor.of_user(fiona))

    event = AuditEvent.objects.get(action="purchase.recorded")
    assert (event.actor, event.actor_label, event.object_id) == (fiona, "user fiona", str(bought.pk))
    assert event.after["tokens"] == 1_000_000 and event.after["price"] == "20.00"
    assert event.before is None


def test_plan_changes_are_audited_with_before_and_after(account):
    services.record_purchase(account, purchase(), FINANCE)
    plan = TokenPlan.objects.get()
    plan.price = Decimal("25")

    services.save_plan(plan, FINANCE)

    event = AuditEvent.objects.get(action="plan.changed")
    assert (event.before["price"], event.after["price"]) == ("20.0000000000", "25")


def test_deleting_an_account_takes_its_billing_data_with_it(account):
    from billing.models import Allocation, BalanceSnapshot
    from billing.recompute import refresh_allocations
    from tests.billing.conftest import ingest, record

    top_up(account, "tu", "10", at(1))
    pk = buy(account, "po", 100, at(1), at(5), paid_from_wallet=True)
    services.void_purchase(PlanPurchase.objects.get(pk=pk), FINANCE, "test")
    buy(account, "po2", 100, at(1), at(5))
    ingest(account, record("r1", at(2), "gpt-4o", 150, 0, "0.2"))
    refresh_allocations(account, now=at(10))
    services.record_manual_balance(account, balance=Decimal("1"), taken_at=at(3), actor=FINANCE)

    account.delete()

    assert not PlanPurchase.objects.exists() and not WalletEntry.objects.exists()
    assert not Allocation.objects.exists() and not BalanceSnapshot.objects.exists()
    assert AuditEvent.objects.filter(account__isnull=True).count() == AuditEvent.objects.count() > 0


def test_the_same_purchase_sent_by_parallel_scripts_is_recorded_once(transactional_db, account):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    def send(_: int) -> bool:
        try:
            return services.record_purchase(account, purchase(), FINANCE)[1]
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        created = list(pool.map(send, range(8)))

    assert sorted(created) == [False] * 7 + [True]
    assert PlanPurchase.objects.count() == 1
    assert AuditEvent.objects.filter(action="purchase.recorded").count() == 1
