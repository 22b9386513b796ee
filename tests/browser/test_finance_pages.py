"""Plans & wallet and Reports in a real browser: finance records a top-up through the form,
engineers are refused, and the pages draw under the CSP without errors."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import expect

from billing.audit import Actor
from billing.recompute import refresh_allocations
from billing.selectors import wallet_balance
from billing.services import PurchaseData, WalletEntryData, record_manual_balance, record_purchase, record_wallet_entry
from tests.browser.conftest import PASSWORD
from toki_dashboard.roles import Role
from usage.models import Account

pytestmark = pytest.mark.browser
FINANCE = Actor.system("browser tests")


@pytest.fixture
def account_with_plans(account_with_usage: Account) -> Account:
    """The usage fixture plus plans (one nearly used up, one expired), top-ups and console balances."""
    account = account_with_usage
    now = timezone.now()
    plans = [
        ("GPT Pro 2M", 2_000_000, "49.00", now - timedelta(days=20), now + timedelta(days=10), ["gpt-4o*"], 5),
        ("Claude trial", 150_000, "0", now - timedelta(days=44), now - timedelta(days=30), ["claude-*"], 0),
        ("Claude 1M", 1_000_000, "25.00", now - timedelta(days=25), now + timedelta(days=35), ["claude-*"], 0),
    ]
    for name, tokens, price, start, end, models, priority in plans:
        record_purchase(
            account,
            PurchaseData(
                plan=name,
                tokens=tokens,
                price=Decimal(price),
                currency="USD",
                effective_at=start,
                expires_at=end,
                idempotency_key=f"browser:{name}",
                models=models,
                priority=priority,
            ),
            FINANCE,
        )
    for key, amount, days_ago in [("browser:t1", "200.00", 45), ("browser:t2", "150.00", 12)]:
        record_wallet_entry(
            account,
            WalletEntryData(
                kind="top_up",
                amount=Decimal(amount),
                currency="USD",
                occurred_at=now - timedelta(days=days_ago),
                idempotency_key=key,
                note="Invoice paid by bank transfer",
            ),
            FINANCE,
        )
    refresh_allocations(account, now=now)
    for days_ago, balance in [(3, "331.20"), (0, "329.70")]:
        record_manual_balance(
            account, balance=Decimal(balance), taken_at=now - timedelta(days=days_ago, minutes=5), actor=FINANCE
        )
    return account


def test_finance_records_a_top_up_through_the_form_and_sees_the_balance_change(
    account_with_plans: Account, browsing, log_in, screenshot
):
    page = log_in(browsing.open())
    page.goto("/plans/")
    before = wallet_balance(account_with_plans)
    expect(page.locator("#wallet-balance")).to_contain_text(f"{before:,.2f}")
    expect(page.locator("#active-plans").get_by_role("row").filter(has_text="GPT Pro 2M")).to_have_count(1)
    screenshot(page, "plans")
    screenshot(page, "plans-full", full_page=True)

    page.locator("#id_top_up-amount").fill("1250.50")
    page.locator("#id_top_up-note").fill("Invoice 2026-117")
    page.locator("#top-up-submit").click()

    expect(page.locator(".messages")).to_contain_text("Recorded the top-up of 1,250.50 USD")
    expect(page.locator("#wallet-balance")).to_contain_text(f"{before + Decimal('1250.50'):,.2f}")
    expect(page.locator("#wallet-ledger")).to_contain_text("Invoice 2026-117")
    assert wallet_balance(account_with_plans) == before + Decimal("1250.50")
    assert browsing.problems(page) == []


def test_an_engineer_opening_plans_sees_the_403_page(account_with_plans: Account, browsing, screenshot):
    group, _ = Group.objects.get_or_create(name=Role.ENGINEER.value)
    User.objects.create_user(username="enzo", password=PASSWORD).groups.add(group)
    page = browsing.open()
    page.goto("/login/")
    page.get_by_label("Username").fill("enzo")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")

    response = page.goto("/plans/")

    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You don’t have access to this page")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Plans & wallet")
    screenshot(page, "plans-403-engineer")


def test_the_reports_page_shows_the_statement_and_downloads_its_csv(
    account_with_plans: Account, browsing, log_in, screenshot
):
    page = log_in(browsing.open())
    month = timezone.localdate().replace(day=1)
    page.goto(f"/reports/?month={month:%Y-%m}")
    expect(page.locator("#statement-model")).to_contain_text("gpt-4o-mini")
    screenshot(page, "reports")
    screenshot(page, "reports-full", full_page=True)

    with page.expect_download() as download_info:
        page.locator("#download-csv").click()
    rows = list(csv.DictReader(io.StringIO(download_info.value.path().read_text())))

    (total,) = [r for r in rows if r["section"] == "total"]
    expect(page.locator("#statement-requests")).to_have_text(f"{int(total['requests']):,}")
    assert browsing.problems(page) == []


def test_the_overview_loads_the_balance_card(account_with_plans: Account, browsing, log_in, screenshot):
    page = log_in(browsing.open())

    expect(page.locator("#balance-card-wallet")).to_contain_text(f"{wallet_balance(account_with_plans):,.2f}")
    screenshot(page, "overview-balance-card")
    assert browsing.problems(page) == []


def test_the_plans_page_reads_in_the_dark_colour_scheme(account_with_plans: Account, browsing, log_in, screenshot):
    page = log_in(browsing.open(color_scheme="dark"))
    page.goto("/plans/")

    background = page.locator(".card").first.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background != "rgb(255, 255, 255)"
    screenshot(page, "plans-dark")
    assert browsing.problems(page) == []


def test_voiding_a_purchase_works_without_javascript(account_with_plans: Account, browsing, log_in):
    page = log_in(browsing.open(java_script_enabled=False))
    page.goto("/plans/")
    row = page.locator("#active-plans tr").filter(has_text="Claude 1M")

    row.get_by_text("Void…").click()
    row.get_by_label("Why is Claude 1M voided?").fill("bought by mistake")
    row.get_by_role("button", name="Void the purchase").click()

    expect(page.locator(".messages")).to_contain_text("Voided the purchase Claude 1M")
    expect(page.locator("#active-plans")).not_to_contain_text("Claude 1M")
    expect(page.locator("#audit-trail")).to_contain_text("bought by mistake")
    expect(page.locator("#audit-trail tbody tr").first).to_contain_text("fiona")


def test_paging_the_ledger_swaps_only_the_ledger_and_keeps_the_page_in_the_url(
    account_with_plans: Account, browsing, log_in
):
    page = log_in(browsing.open())
    page.goto("/plans/")
    page.evaluate("window.sameDocumentMarker = 'still here'")

    page.locator("#wallet-ledger").get_by_role("link", name="Older →").click()

    expect(page.locator("#wallet-ledger")).to_contain_text("Page 2 of")
    expect(page).to_have_url(re.compile(r"/plans/\?page=2$"))
    assert page.evaluate("window.sameDocumentMarker") == "still here"
    assert browsing.problems(page) == []
