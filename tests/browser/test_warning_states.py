"""Overview, Plans & wallet and Reports in a real browser, in a state that needs attention:
a wallet below zero, a plan nearly used up and a model without a price. Each page says so
where the figure is, and the screenshots are kept for people to look at."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.audit import Actor
from billing.recompute import refresh_allocations
from billing.services import PurchaseData, WalletEntryData, record_purchase, record_wallet_entry
from usage.models import Account

pytestmark = pytest.mark.browser
FINANCE = Actor.system("browser tests")


@pytest.fixture
def account_in_trouble(account_with_usage: Account) -> Account:
    """Weeks of usage (deepseek-chat unpriced), a small top-up the usage outran, and a GPT mini
    plan almost used up."""
    account = account_with_usage
    now = timezone.now()
    record_wallet_entry(
        account,
        WalletEntryData(
            kind="top_up", amount=Decimal("5.00"), currency="USD", occurred_at=now - timedelta(days=50),
            idempotency_key="small-top-up",
        ),
        FINANCE,
    )  # fmt: skip
    record_purchase(
        account,
        PurchaseData(
            plan="GPT mini pack", tokens=600_000, price=Decimal("6.00"), currency="USD",
            effective_at=now - timedelta(days=10), expires_at=now + timedelta(days=20),
            idempotency_key="mini-pack", models=["gpt-4o-mini"],
        ),
        FINANCE,
    )  # fmt: skip
    refresh_allocations(account, now=now)
    return account


def test_the_overview_warns_of_the_negative_wallet_and_the_unpriced_model(
    account_in_trouble: Account, browsing, log_in, screenshot
):
    page = log_in(browsing.open())

    expect(page.locator("#balance-card-wallet-card")).to_have_class("metric metric--danger")
    expect(page.locator("#balance-card-wallet")).to_contain_text("-")
    top_models = page.locator("section").filter(has=page.locator("#top-models-title"))
    expect(top_models.get_by_role("row").filter(has_text="deepseek-chat")).to_contain_text("unpriced")
    expect(page.locator("#overview-usage-value-card")).to_contain_text("excludes")
    # The plan here cost more than list price: said in words and in warning colour, not "savings -5.66".
    expect(page.locator("#overview-savings .text-warning")).to_contain_text("over usage value")
    expect(page.locator("#overview-savings")).not_to_contain_text("-")
    # The unpriced model is left out of the usage-value chart, and the chart says so: never a zero bar.
    expect(page.locator("#spend-chart-unpriced")).to_contain_text("deepseek-chat")
    expect(page.locator("[data-figure=spend-chart] .legend")).not_to_contain_text("deepseek-chat")
    screenshot(page, "warning-overview")
    screenshot(page, "warning-overview-full", full_page=True)
    assert browsing.problems(page) == []


def test_plans_and_wallet_warn_of_the_negative_wallet_and_the_low_plan(
    account_in_trouble: Account, browsing, log_in, screenshot
):
    page = log_in(browsing.open())
    page.goto("/plans/")

    expect(page.locator("#wallet-balance-card")).to_have_class("metric metric--danger")
    expect(page.locator("#wallet-balance-card")).to_contain_text("Negative")
    expect(page.locator("#token-balance-card")).to_have_class(re.compile(r"metric metric--(warning|danger)"))
    expect(page.locator("#forecast-chart .chart .main-svg").first).to_be_attached()
    screenshot(page, "warning-plans")
    screenshot(page, "warning-plans-full", full_page=True)
    assert browsing.problems(page) == []


def test_the_statement_shows_the_unpriced_model_as_unpriced_and_both_money_figures(
    account_in_trouble: Account, browsing, log_in, screenshot
):
    page = log_in(browsing.open())
    month = timezone.localdate().replace(day=1)
    page.goto(f"/reports/?month={month:%Y-%m}")

    row = page.locator("#statement-model").get_by_role("row").filter(has_text="deepseek-chat")
    expect(row).to_contain_text("unpriced")
    expect(row).not_to_contain_text("0.00")
    expect(page.locator("#statement-paid")).to_be_visible()
    expect(page.locator("#statement-usage-value")).to_be_visible()
    screenshot(page, "warning-reports")
    screenshot(page, "warning-reports-full", full_page=True)
    assert browsing.problems(page) == []
