"""The billing half of seed_demo: plans, purchases (one expiring soon with tokens left),
top-ups, a voided mistake, and console balances that drift slightly. Deterministic and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import selectors
from billing.demo import seed_demo_billing
from billing.models import Allocation, BalanceSnapshot, PlanExpiry, PlanPurchase, WalletEntry
from usage import demo


@pytest.fixture
def seeded(db):
    report = demo.seed_demo_usage(days=2, seed=1)
    billing = seed_demo_billing(report.account, report.window)
    return report.account, report.window, billing


def billing_rows(account) -> tuple:
    return (
        sorted(PlanPurchase.objects.filter(account=account).values_list("idempotency_key", "tokens", "voided_at")),
        sorted(WalletEntry.objects.filter(account=account).values_list("idempotency_key", "amount")),
        sorted(BalanceSnapshot.objects.filter(account=account).values_list("taken_at", "balance")),
        Allocation.objects.filter(account=account).count(),
    )


def test_running_it_again_adds_nothing(seeded):
    account, window, first = seeded
    before = billing_rows(account)

    again = seed_demo_billing(account, window)

    assert (again.purchases_created, again.entries_created, again.snapshots_created) == (0, 0, 0)
    assert billing_rows(account) == before
    assert first.purchases_created == 5 and first.entries_created == 2


def test_one_plan_expires_within_days_with_tokens_left_and_one_expired_unused(seeded):
    account, _, _ = seeded
    now = timezone.now()

    soon = [s for s in selectors.plan_statuses(account, now=now) if s.purchase.expires_at - now < timedelta(days=4)]
    assert [s.purchase.name for s in soon] == ["DeepSeek Pack"]
    assert soon[0].tokens_remaining > 0
    trial = PlanExpiry.objects.get(purchase__name="Claude Trial")
    assert 0 < trial.tokens < trial.purchase.tokens


@pytest.mark.parametrize("hour", [(4, 12), (4, 18), (5, 0), (5, 6), (5, 9)])
def test_the_trial_expires_with_tokens_left_whatever_the_hour_the_window_ends(db, hour):
    # Traffic follows the hour of the day: a trial of a fixed size ran out before expiring
    # when the window began in working hours (windows ending 5 Dec 09:00 did, so this file
    # failed from 09:00 UTC on 5 Dec 2026).
    day, at = hour
    report = demo.seed_demo_usage(days=2, seed=1, until=datetime(2026, 12, day, at, tzinfo=UTC))
    seed_demo_billing(report.account, report.window)
    trial = PlanExpiry.objects.get(purchase__name="Claude Trial")
    assert 0 < trial.tokens < trial.purchase.tokens


def test_some_usage_is_paid_from_the_wallet_and_a_mistake_was_voided(seeded):
    account, _, _ = seeded

    wallet_rows = Allocation.objects.filter(account=account, purchase__isnull=True)
    assert set(wallet_rows.values_list("record__model", flat=True)) >= {"doubao-1.5-pro-32k", "text-embedding-3-small"}
    assert PlanPurchase.objects.filter(account=account, voided_at__isnull=False).count() == 1
    assert selectors.wallet_balance(account) > 0


def test_the_console_balances_drift_slightly_from_the_dashboard(seeded):
    account, window, billing = seeded

    result = selectors.reconcile(account, start=window.start, end=window.until)

    assert billing.snapshots_created == 2
    assert result.dashboard_consumption > 0
    assert 0 < result.drift <= result.dashboard_consumption * 4 / 100 + 1


def test_the_command_reports_the_billing_data(db):
    out = StringIO()

    call_command("seed_demo", "--days", "1", stdout=out)

    assert "Billing: 5 purchases, 2 wallet entries" in out.getvalue()


def test_the_demo_pack_reads_the_same_projected_unused_tokens_in_the_alert_the_table_and_the_api(
    transactional_db, make_user
):
    """The demo's DeepSeek Pack once read different numbers in the alert, the plans table and
    the API at the same moment: the demo's rules are evaluated with the balances pages show."""
    from django.test import Client

    from billing.models import AlertRule
    from tests.surfaces import text_by_id
    from toki_dashboard.roles import Role
    from usage.models import Membership, TokenScope
    from usage.services import create_api_token

    report = demo.seed_demo_usage(days=30, seed=1)
    seed_demo_billing(report.account, report.window)
    fiona = make_user("fiona", Role.FINANCE)
    Membership.objects.create(account=report.account, user=fiona)
    finance = Client()
    finance.force_login(fiona)
    token = create_api_token(account=report.account, name="r", scopes=[TokenScope.READ])[1]

    page = finance.get("/plans/").content.decode()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/v1/balance").json()

    (pack,) = [p for p in api["plans"] if p["name"] == "DeepSeek Pack"]
    assert pack["projected_unused_at_expiry"] > 0
    shown = f"{pack['projected_unused_at_expiry']:,}"
    rule = AlertRule.objects.get(account=report.account, name="Plan expiring with tokens unused")
    assert f"({shown} tokens)" in rule.last_summary
    assert text_by_id(page, f"projected-unused-{pack['id']}") == shown


def test_the_demo_has_two_budgets_sized_on_its_usage_once(seeded):
    from billing.budgets import spend
    from billing.models import Budget

    account, window, _ = seeded
    seed_demo_billing(account, window)

    budgets = {b.name: b for b in Budget.objects.filter(account=account)}
    assert set(budgets) == {"Search team", "Whole account, paid"}
    assert spend.status(budgets["Search team"], now=window.until).spent > 0
