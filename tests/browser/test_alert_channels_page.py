"""A rule's channels in a real browser: an admin adds a webhook and a chat channel, opens a rule,
sees where it is told, sends a test per channel and the rule's test, and reads the delivery log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from billing.models import AlertChannel, AlertKind
from tests.billing.test_alerts import low_balance_rule, nearly_used_up
from tests.billing.webhook_receiver import WebhookReceiver
from tests.browser.conftest import Browsing
from tests.browser.test_alerts_page import admin_user, log_in  # noqa: F401
from usage.models import Account
from usage.services import create_account

pytestmark = pytest.mark.browser


@pytest.fixture
def account_with_a_rule(transactional_db) -> Account:
    from django.utils import timezone

    account = create_account(name="Acme Research", slug="acme", currency="USD")
    nearly_used_up(account, timezone.now())
    low_balance_rule(account, name="Wallet below 5 USD", kind=AlertKind.WALLET_BELOW, threshold=5, recipients="")
    return account


def test_an_admin_adds_channels_and_sends_tests_from_a_rule(
    browsing: Browsing,
    admin_user: User,  # noqa: F811
    account_with_a_rule: Account,
    webhook_receiver: WebhookReceiver,
    screenshot: Callable[..., Path],
):
    page = browsing.open()
    log_in(page, admin_user)
    page.goto("/alerts/")

    channels = page.locator("#channels")
    channels.get_by_label("Kind").select_option("webhook")
    channels.get_by_label("Address or URL").fill(webhook_receiver.url)
    channels.get_by_label("Label").fill("On-call hook")
    channels.get_by_role("button", name="Add channel").click()
    expect(page.get_by_text("Its signing secret, shown this once:")).to_be_visible()
    channels = page.locator("#channels")
    channels.get_by_label("Kind").select_option("apprise")
    channels.get_by_label("Address or URL").fill(webhook_receiver.url.replace("http://", "json://"))
    channels.get_by_label("Label").fill("#finance")
    channels.get_by_role("button", name="Add channel").click()
    expect(page.get_by_text("Channel #finance added")).to_be_visible()

    page.get_by_role("row").filter(has_text="Wallet below 5 USD").get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name="Where “Wallet below 5 USD” is told")).to_be_visible()
    table = page.locator(".channels-table")
    expect(table).to_contain_text("On-call hook")
    expect(table).to_contain_text("#finance")
    expect(table).not_to_contain_text(webhook_receiver.url)  # URLs are shown only in part

    table.get_by_role("row").filter(has_text="On-call hook").get_by_role("button", name="Send test").click()
    expect(page.get_by_text("Test sent to On-call hook (HTTP 200).")).to_be_visible()
    assert webhook_receiver.wait_for(1)[0].json["event"] == "test"

    page.goto("/alerts/")
    page.get_by_role("row").filter(has_text="Wallet below 5 USD").get_by_role("button", name="Send test").click()
    expect(page.get_by_text("Test sent to webhook")).to_be_visible()
    expect(page.get_by_text("Test sent to chat (apprise url)")).to_be_visible()
    assert len(webhook_receiver.wait_for(3)) == 3

    rule_page = page.get_by_role("row").filter(has_text="Wallet below 5 USD").get_by_role("link", name="Edit")
    rule_page.click()
    log = page.locator("#deliveries")
    expect(log).to_contain_text("Test")
    expect(log.locator("tbody tr")).to_have_count(2)  # the rule's own test, to both channels
    expect(log).to_contain_text("200")
    screenshot(page, "alert-rule-channels", full_page=True)
    assert AlertChannel.objects.count() == 2
    assert browsing.problems(page) == []
