"""Billing in the Django admin: additions go through the services, corrections are voids and
reversals with a reason, derived data is read-only, and credentials are write-only."""

from __future__ import annotations

from decimal import Decimal

from billing.models import (
    Allocation,
    AuditEvent,
    BalanceSnapshot,
    PlanPurchase,
    SyncRun,
    WalletEntry,
    WalletEntryKind,
)
from billing.sync import sync_account
from tests.billing.conftest import at, buy, top_up
from tests.billing.fake_console import ACCESS_TOKEN


def test_voiding_in_the_admin_needs_a_reason_and_records_who_and_why(staff_client, account):
    pk = buy(account, "po", 1000, at(1), at(30))
    url = "/admin/billing/planpurchase/"

    staff_client.post(url, {"action": "void_purchases", "_selected_action": [pk], "reason": ""})
    assert PlanPurchase.objects.get(pk=pk).voided_at is None

    staff_client.post(url, {"action": "void_purchases", "_selected_action": [pk], "reason": "duplicate invoice"})
    purchase = PlanPurchase.objects.get(pk=pk)
    assert purchase.voided_by == staff_client.user and purchase.void_reason == "duplicate invoice"
    event = AuditEvent.objects.get(action="purchase.voided")
    assert (event.actor, event.actor_label) == (staff_client.user, "user root")


def test_a_purchase_added_in_the_admin_is_recorded_by_the_service(staff_client, account):
    buy(account, "existing", 10, at(1), at(2), plan="Pro")
    plan_id = PlanPurchase.objects.get().plan_id

    response = staff_client.post(
        "/admin/billing/planpurchase/add/",
        {
            "account": account.pk,
            "plan": plan_id,
            "tokens": 5000,
            "price": "12.50",
            "currency": "USD",
            "effective_at_0": "2026-03-01",
            "effective_at_1": "00:00:00",
            "expires_at_0": "2026-04-01",
            "expires_at_1": "00:00:00",
            "allowed_models": '["gpt-*"]',
            "priority": 0,
            "token_basis": "total",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    added = PlanPurchase.objects.get(tokens=5000)
    assert added.idempotency_key.startswith("admin:") and added.created_by == staff_client.user
    assert AuditEvent.objects.filter(action="purchase.recorded", object_id=str(added.pk)).exists()


def test_purchases_cannot_be_edited_or_deleted_in_the_admin(staff_client, account):
    pk = buy(account, "po", 1000, at(1), at(30))

    staff_client.post(f"/admin/billing/planpurchase/{pk}/change/", {"tokens": 999_999})
    deleted = staff_client.post(f"/admin/billing/planpurchase/{pk}/delete/", {"post": "yes"})

    assert PlanPurchase.objects.get(pk=pk).tokens == 1000
    assert deleted.status_code == 403


def test_wallet_entries_are_reversed_with_a_reason_never_deleted(staff_client, account):
    pk = top_up(account, "tu", "40", at(2))

    staff_client.post(
        "/admin/billing/walletentry/", {"action": "reverse_entries", "_selected_action": [pk], "reason": "typo"}
    )
    deleted = staff_client.post(f"/admin/billing/walletentry/{pk}/delete/", {"post": "yes"})

    assert deleted.status_code == 403
    assert sorted(WalletEntry.objects.values_list("amount", flat=True)) == [Decimal("-40"), Decimal("40")]
    assert WalletEntry.objects.get(reverses_id=pk).kind == WalletEntryKind.ADJUSTMENT


def test_allocations_sync_runs_and_the_audit_trail_are_read_only(staff_client):
    for path in ("allocation", "syncrun", "auditevent", "planexpiry"):
        assert staff_client.get(f"/admin/billing/{path}/").status_code == 200
        assert staff_client.get(f"/admin/billing/{path}/add/").status_code == 403
    assert not Allocation.objects.exists()


def test_a_balance_read_off_the_console_is_added_by_finance(staff_client, account):
    response = staff_client.post(
        "/admin/billing/balancesnapshot/add/",
        {"account": account.pk, "taken_at_0": "2026-03-02", "taken_at_1": "12:00:00", "balance": "88.20", "note": "x"},
    )

    assert response.status_code == 302
    snapshot = BalanceSnapshot.objects.get()
    assert (snapshot.balance, snapshot.source, snapshot.created_by) == (Decimal("88.2"), "manual", staff_client.user)


def test_credentials_are_write_only_and_never_shown_back(staff_client, newapi_account):
    url = f"/admin/billing/provideraccount/{newapi_account.pk}/change/"

    page = staff_client.get(url).content.decode()
    assert ACCESS_TOKEN not in page and newapi_account.credentials_encrypted not in page
    assert "…cdef" in page

    # Saving without typing the secrets keeps them; a new token replaces the old one.
    form = {"provider": "newapi_console", "base_url": newapi_account.base_url, "sync_interval_minutes": 10}
    staff_client.post(url, form)
    newapi_account.refresh_from_db()
    assert newapi_account.get_credentials()["access_token"] == ACCESS_TOKEN
    assert newapi_account.sync_interval_minutes == 10
    staff_client.post(url, form | {"access_token": "a-brand-new-console-token"})
    newapi_account.refresh_from_db()
    assert newapi_account.get_credentials() == {"access_token": "a-brand-new-console-token", "user_id": "4242"}
    assert newapi_account.credentials_hint == "…oken"


def test_the_sync_history_is_listed_with_last_success_error_and_duration(staff_client, newapi_account, console):
    sync_account(newapi_account)
    console.fail("/api/user/self", "success_false")
    sync_account(newapi_account)

    listing = staff_client.get("/admin/billing/provideraccount/").content.decode()
    runs = staff_client.get("/admin/billing/syncrun/").content.decode()

    assert "系统繁忙" in listing  # the last error
    assert SyncRun.objects.count() == 2
    assert "Success" in runs and "Malformed or failed answer" in runs
    assert ACCESS_TOKEN not in listing + runs


def test_an_invalid_purchase_in_the_admin_is_a_form_error_not_a_crash(staff_client, account):
    buy(account, "existing", 10, at(1), at(2), plan="Pro")

    response = staff_client.post(
        "/admin/billing/planpurchase/add/",
        {
            "account": account.pk,
            "plan": PlanPurchase.objects.get().plan_id,
            "tokens": 5000,
            "price": "12.50",
            "currency": "EUR",
            "effective_at_0": "2026-03-01",
            "effective_at_1": "00:00:00",
            "expires_at_0": "2026-04-01",
            "expires_at_1": "00:00:00",
            "allowed_models": "[]",
            "priority": 0,
            "token_basis": "total",
            "paid_from_wallet": "on",
        },
    )

    assert response.status_code == 200
    assert "wallet&#x27;s currency" in response.content.decode()
    assert PlanPurchase.objects.count() == 1
