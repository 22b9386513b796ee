"""Page defects seen walking the product as finance, engineer and admin, each checked in a
real browser: the Alerts page's badges and addresses, the 403 page's advice, the wallet
ledger's grouping, the audit trail's filters, the latency card, and card URLs opened directly."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing import alerts, services
from billing.audit import Actor
from billing.models import AlertKind, AuditEvent, WalletEntry, WalletEntryKind
from tests.billing.test_alerts import low_balance_rule, nearly_used_up
from tests.browser.conftest import PASSWORD, member_of_every_account
from tests.members import members_with_emails
from toki_dashboard.roles import Role
from usage.models import Account
from usage.periods import dashboard_tz
from usage.schemas import RecordIn
from usage.services import create_account, record_usage
from usage.views.models import CARDS

pytestmark = pytest.mark.browser

LONG_RULE = "Token balance of the production search and support keys below twenty percent before month end"
ADDRESSES = [
    "finance-controlling-team@acme-research.example.com",
    "platform-oncall-rotation@acme-research.example.com",
]


def user_with(role: Role, username: str, **fields: str) -> User:
    group, _ = Group.objects.get_or_create(name=role.value)
    user = User.objects.create_user(username=username, password=PASSWORD, **fields)
    user.groups.add(group)
    return user


@pytest.fixture
def log_in_as() -> Callable[[Page, User], Page]:
    def log_in(page: Page, user: User) -> Page:
        member_of_every_account(user)
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        return page

    return log_in


# --- Alerts -----------------------------------------------------------------------------------


@pytest.fixture
def firing_long_rule(transactional_db) -> Account:
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    now = timezone.now()
    nearly_used_up(account, now)
    low_balance_rule(account, name=LONG_RULE, recipients=members_with_emails(account, ADDRESSES))
    low_balance_rule(account, name="Wallet below zero", kind=AlertKind.WALLET_BELOW, threshold=0)
    alerts.evaluate_account(account, now=now - timedelta(hours=1))
    return account


# Each (start, end) range of `needle` in the text nodes of `cell` as rendered lines: a word
# broken over two lines has rectangles at two heights.
LINES_OF = """([cell, needle]) => {
  const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
  const found = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.textContent.indexOf(needle);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + needle.length);
    found.push(new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top))).size);
  }
  return found;
}"""


def test_a_long_rule_name_leaves_its_firing_badge_in_view_and_addresses_stay_whole(
    firing_long_rule, browsing, log_in_as, screenshot
):
    admin = user_with(Role.ADMIN, "ada", first_name="Ada", last_name="Admin")
    page = log_in_as(browsing.open(), admin)
    page.goto("/alerts/")

    row = page.locator(".alerts-table").first.get_by_role("row").filter(has_text=LONG_RULE[:40])
    cell = row.get_by_role("rowheader")
    badge = cell.locator(".pill--firing")
    expect(badge).to_be_visible()
    screenshot(page, "alerts-long-rule")
    inside = cell.evaluate(
        """(cell) => {
          const badge = cell.querySelector('.pill--firing').getBoundingClientRect();
          const box = cell.getBoundingClientRect();
          const style = getComputedStyle(cell);
          const right = box.right - parseFloat(style.paddingRight);
          return badge.width > 0 && badge.left >= box.left && badge.right <= right + 0.5;
        }"""
    )
    assert inside, "the Firing badge is clipped by the rule's cell"
    recipients = row.locator(".alerts-recipients")
    for address in ADDRESSES:
        lines = page.evaluate(LINES_OF, [recipients.element_handle(), address])
        assert lines == [1], f"{address} is broken over {lines} lines"


# --- 403 --------------------------------------------------------------------------------------


def test_the_403_page_names_the_role_the_page_needs_and_who_to_ask(transactional_db, browsing, log_in_as):
    create_account(name="Acme Research", slug="acme")
    user_with(Role.ADMIN, "ada", first_name="Ada", last_name="Admin", email="ada@acme.example")
    engineer = user_with(Role.ENGINEER, "enzo")
    page = log_in_as(browsing.open(), engineer)

    response = page.goto("/plans/")

    assert response is not None and response.status == 403
    text = page.locator("main").inner_text()
    assert "finance or engineer group" not in text
    expect(page.locator(".error-page")).to_contain_text("Plans & wallet needs the finance role")
    expect(page.locator(".error-page")).to_contain_text("Your role: engineer")
    expect(page.locator(".error-page").get_by_role("link", name="Ada Admin")).to_have_attribute(
        "href", "mailto:ada@acme.example"
    )


# --- Wallet ledger and audit trail --------------------------------------------------------------


@pytest.fixture
def ledger_account(transactional_db) -> Account:
    """Top-ups and adjustments over two months, a zero usage line per day (as the daily
    posting leaves them), and balance readings recorded by the demo loader."""
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    finance = user_with(Role.FINANCE, "fiona")
    member_of_every_account(finance)
    now = timezone.now().replace(microsecond=0)
    for n, (days_back, amount) in enumerate([(1, "50"), (1, "25.5"), (3, "-4.25"), (40, "100"), (41, "-7")]):
        services.record_wallet_entry(
            account,
            services.WalletEntryData(
                kind=WalletEntryKind.TOP_UP if Decimal(amount) > 0 else WalletEntryKind.ADJUSTMENT,
                amount=Decimal(amount),
                currency="USD",
                occurred_at=now - timedelta(days=days_back),
                idempotency_key=f"entry-{n}",
                note=f"entry {n}",
            ),
            Actor.of_user(finance),
        )
    for days_back in range(0, 45):  # what the usage posting leaves on a day without wallet charges
        WalletEntry.objects.create(
            account=account,
            kind=WalletEntryKind.USAGE_CHARGE,
            amount=Decimal(0),
            currency="USD",
            occurred_at=now - timedelta(days=days_back, hours=1),
            idempotency_key=f"usage-{days_back}",
            usage_day=(now - timedelta(days=days_back)).date(),
            created_via="allocation",
        )
    for days_back in range(0, 20):
        services.record_manual_balance(
            account, balance=Decimal("100"), taken_at=now - timedelta(days=days_back), actor=Actor.system("seed_demo")
        )
    return account


def test_the_ledger_is_grouped_by_month_and_day_without_zero_lines_or_idempotency_keys(
    ledger_account, browsing, log_in_as, screenshot
):
    page = log_in_as(browsing.open(), User.objects.get(username="fiona"))
    page.goto("/plans/")
    ledger = page.locator("#wallet-ledger")

    expect(ledger.get_by_role("columnheader")).not_to_contain_text(["Idempotency key"])
    expect(ledger).not_to_contain_text("entry-0")
    screenshot(page, "ledger-grouped")
    entries = WalletEntry.objects.filter(account=ledger_account).exclude(amount=0)
    tz = dashboard_tz()
    days = sorted({e.occurred_at.astimezone(tz).date() for e in entries}, reverse=True)
    months = sorted({d.replace(day=1) for d in days}, reverse=True)
    month_rows = ledger.locator("tr.ledger-month")
    day_rows = ledger.locator("tr.ledger-day")
    expect(month_rows).to_have_count(len(months))
    expect(day_rows).to_have_count(len(days))
    for row, day in zip(day_rows.all(), days, strict=True):
        total = sum(e.amount for e in entries if e.occurred_at.astimezone(tz).date() == day)
        assert row.get_attribute("data-day") == day.isoformat()
        expect(row.locator(".ledger-total")).to_have_text(f"{total:,.2f}")
    expect(ledger.locator("tr.ledger-entry")).to_have_count(entries.count())
    expect(ledger).to_contain_text("45 zero-amount lines hidden")


def test_the_audit_trail_hides_system_noise_by_default_and_filters_by_actor_and_action(
    ledger_account, browsing, log_in_as
):
    page = log_in_as(browsing.open(), User.objects.get(username="fiona"))
    page.goto("/plans/")
    audit = page.locator("#audit-trail")

    expect(audit.locator("tbody tr")).to_have_count(5)  # the five entries fiona recorded
    expect(audit.locator("tbody")).not_to_contain_text("balance.recorded")
    expect(audit).to_contain_text("20 system events hidden")

    audit.get_by_label("Include system events").check()
    audit.get_by_role("button", name="Filter").click()
    expect(audit.locator("tbody")).to_contain_text("balance.recorded")

    audit.get_by_label("Action").select_option("balance.recorded")
    audit.get_by_role("button", name="Filter").click()
    page.wait_for_url("**audit_action=balance.recorded**")
    shown = AuditEvent.objects.filter(account=ledger_account, action="balance.recorded").count()
    expect(page.locator("#audit-trail tbody tr")).to_have_count(min(shown, 15))
    expect(page.locator("#audit-trail tbody")).not_to_contain_text("wallet.recorded")

    page.locator("#audit-trail").get_by_label("Action").select_option("")
    page.locator("#audit-trail").get_by_label("Who").select_option("user fiona")
    page.locator("#audit-trail").get_by_role("button", name="Filter").click()
    page.wait_for_url("**audit_actor=user+fiona**")
    expect(page.locator("#audit-trail tbody tr")).to_have_count(5)
    expect(page.locator("#audit-trail tbody")).not_to_contain_text("balance.recorded")


# --- The model page's latency card, and card URLs opened directly -------------------------------


@pytest.fixture
def engineer(transactional_db) -> User:
    return user_with(Role.ENGINEER, "enzo")


@pytest.fixture
def timed_account(transactional_db) -> Account:
    """A model with timed requests and failures of four causes (a tall errors card)."""
    account = create_account(name="Acme Research", slug="acme")
    now = timezone.now()
    failures = [(429, "rate_limit_exceeded"), (500, "server_error"), (401, "invalid_api_key"), (404, "model_not_found")]
    records = []
    for n in range(60):
        fields = {
            "request_id": f"r-{n}",
            "occurred_at": now - timedelta(hours=n + 1),
            "model": "gpt-4o",
            "latency_ms": 400 + 37 * n,
            "usage": {"prompt_tokens": 100, "completion_tokens": 20},
        }
        if n % 6 == 0:
            status, code = failures[(n // 6) % len(failures)]
            fields |= {"status_code": status, "usage": None, "error": {"code": code}}
        records.append(RecordIn.model_validate(fields))
    record_usage(account, list(enumerate(records)), source="api")
    return account


def test_the_latency_card_has_no_empty_space(timed_account, engineer, browsing, log_in_as, screenshot):
    page = log_in_as(browsing.open(), engineer)
    page.goto("/models/gpt-4o/")
    card = page.locator("#card-latency")
    expect(card.locator("#latency-p50")).to_be_visible()
    screenshot(page, "model-latency-card", full_page=True)
    expect(page.locator(".card--lazy")).to_have_count(0)  # every card is in: the grid is final

    empty = card.evaluate(
        """(card) => {
          const box = card.getBoundingClientRect();
          const last = [...card.children].map(c => c.getBoundingClientRect().bottom);
          return box.bottom - Math.max(...last) - parseFloat(getComputedStyle(card).paddingBottom);
        }"""
    )
    assert empty < 24, f"{empty:.0f} px of empty space under the latency figures"


def card_urls() -> list[str]:
    return [
        "/overview/spend-chart/",
        "/plans/balance-card/",
        "/plans/forecast-chart/",
        *[f"/models/gpt-4o/cards/{card}/" for card in CARDS],
    ]


def test_every_card_url_opened_directly_is_a_whole_page(account_with_usage, browsing, log_in_as):
    admin = user_with(Role.ADMIN, "ada")
    page = log_in_as(browsing.open(), admin)

    for url in card_urls():
        response = page.goto(url)
        assert response is not None and response.status == 200, url
        expect(page.locator("nav[aria-label='Main']").first, url).to_be_attached()
        expect(page.locator("h1").first, url).to_be_visible()
        assert page.title().strip(), url
    page.goto("/overview/spend-chart/")
    expect(page.locator(".chart[data-figure='spend-chart'] .main-svg").first).to_be_visible()
    assert not browsing.problems(page)
