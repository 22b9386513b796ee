"""The Alerts page in a real browser: rules, a firing episode, its emails, a test email."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing import alerts
from billing.models import AlertKind, AlertRule
from tests.billing.test_alerts import low_balance_rule, nearly_used_up
from tests.browser.conftest import PASSWORD, Browsing
from toki_dashboard.roles import Role
from usage.models import Account
from usage.services import create_account


@pytest.fixture
def admin_user(transactional_db) -> User:
    group, _ = Group.objects.get_or_create(name=Role.ADMIN.value)
    user = User.objects.create_user(username="ada", password=PASSWORD, first_name="Ada", last_name="Admin")
    user.groups.add(group)
    return user


@pytest.fixture
def account_with_alerts(transactional_db) -> Account:
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    now = timezone.now()
    nearly_used_up(account, now)
    low_balance_rule(account)
    low_balance_rule(
        account, name="Runs out within a week", kind=AlertKind.RUNOUT_WITHIN, threshold=7, cooldown_hours=0
    )
    quiet = low_balance_rule(account, name="Wallet below 5 USD", kind=AlertKind.WALLET_BELOW, threshold=5)
    quiet.recipients = "finance@example.com"
    quiet.save()
    alerts.evaluate_account(account, now=now - timedelta(hours=3))
    return account


def log_in(page: Page, user: User) -> None:
    page.goto("/login/")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


def test_the_alerts_page_shows_rules_history_and_sends_a_test_email(
    browsing: Browsing, admin_user: User, account_with_alerts: Account, screenshot: Callable[..., Path]
):
    page = browsing.open()
    log_in(page, admin_user)

    page.goto("/alerts/")

    expect(page.get_by_role("heading", name="Alerts", level=1)).to_be_visible()
    expect(page.locator("#alert-banner")).to_contain_text("Token balance 5.0%")
    rules = page.get_by_role("table").first
    expect(rules).to_contain_text("Token balance below 20%")
    expect(rules).to_contain_text("Firing")
    expect(page.get_by_role("heading", name="History")).to_be_visible()
    screenshot(page, "alerts")
    screenshot(page, "alerts-full", full_page=True)

    row = page.get_by_role("row").filter(has_text="Wallet below 5 USD")
    row.get_by_role("button", name="Send test").click()

    expect(page.get_by_text("Test email sent to finance@example.com.")).to_be_visible()
    assert [m.to for m in mail.outbox][-1] == ["finance@example.com"]
    assert browsing.problems(page) == []


def test_a_rule_is_created_from_the_form_without_javascript(
    browsing: Browsing, admin_user: User, account_with_alerts: Account
):
    page = browsing.open(java_script_enabled=False)
    log_in(page, admin_user)
    page.goto("/alerts/")

    page.get_by_label("Name").fill("Spend spike")
    page.get_by_label("Condition").select_option(AlertKind.SPEND_SPIKE.value)
    page.get_by_label("Threshold").fill("3")
    page.get_by_label("Recipients").fill("oncall@example.com")
    page.get_by_role("button", name="Create rule").click()

    expect(page.get_by_text("Rule “Spend spike” created")).to_be_visible()
    assert AlertRule.objects.filter(name="Spend spike", kind=AlertKind.SPEND_SPIKE).exists()
