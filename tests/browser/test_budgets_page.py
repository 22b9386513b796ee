"""The Budgets page in a real browser: finance adds a budget, sees its progress bar, forecast and
past periods, and the page breaks no content-security rule."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from billing.models import Budget
from tests.browser.conftest import Browsing
from usage.models import Account

pytestmark = pytest.mark.browser


def test_finance_adds_a_team_budget_and_sees_spend_forecast_and_history(
    browsing: Browsing, log_in: Callable[[Page], Page], account_with_usage: Account, screenshot: Callable[..., Path]
):
    page = log_in(browsing.open())

    page.get_by_role("link", name="Budgets").click()
    expect(page.get_by_role("heading", name="Budgets", level=1)).to_be_visible()
    expect(page.get_by_text("No budget yet")).to_be_visible()

    page.get_by_label("Name").fill("Backend keys")
    page.get_by_label("Applies to").select_option("api_key")
    page.get_by_label("Team, key or model").fill("prod-backend")
    page.get_by_label("Counts").select_option("tokens")
    page.get_by_label("Amount").fill("2000000")
    page.get_by_label("Period", exact=True).select_option("month")
    page.get_by_label("Enforce at the proxy").check()
    page.get_by_role("button", name="Add budget").click()

    expect(page.get_by_text("Budget “Backend keys” added.")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="Backend keys")
    expect(row).to_contain_text("Tokens of key prod-backend")
    expect(row).to_contain_text("of 2,000,000 tokens")
    expect(row.locator("progress.budget-bar")).to_be_visible()
    expect(row).to_contain_text("Enforced")
    expect(row.locator(".budget-forecast")).to_contain_text("%")
    expect(row.locator(".budget-history__item").first).to_be_visible()
    budget = Budget.objects.get(name="Backend keys")
    assert (budget.scope, budget.target, budget.enforce) == ("api_key", "prod-backend", True)
    screenshot(page, "budgets", full_page=True)

    row.get_by_role("link", name="Edit").click()
    page.get_by_label("Amount").fill("100")
    page.get_by_role("button", name="Save budget").click()
    row = page.get_by_role("row").filter(has_text="Backend keys")
    expect(row.get_by_text("Exceeded", exact=True)).to_be_visible()
    expect(row.locator(".budget-forecast")).to_contain_text("exceeded")

    assert browsing.problems(page) == []


def test_a_budget_with_a_bad_target_says_what_is_missing(
    browsing: Browsing, log_in: Callable[[Page], Page], account_with_usage: Account
):
    page = log_in(browsing.open())
    page.goto("/budgets/")

    page.get_by_label("Name").fill("Nobody's")
    page.get_by_label("Applies to").select_option("team")
    page.get_by_label("Amount").fill("10")
    page.get_by_role("button", name="Add budget").click()

    expect(page.locator("#id_target_error")).to_contain_text("say which team the budget is for")
    expect(page.locator(".form-errors")).to_contain_text("say which team the budget is for")  # the summary too
    expect(page.locator("#id_target")).to_be_focused()
    assert not Budget.objects.exists()
