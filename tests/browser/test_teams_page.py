"""Move a key to a team and see the report follow: finance reads last month's statement with a
key's spend under its old team, an admin moves the key to another team with all its past usage,
and the same statement then shows that spend under the new team (the Spend page too)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing.recompute import refresh_allocations
from tests.billing.conftest import ingest, record
from tests.browser.conftest import PASSWORD, Browsing, member_of_every_account
from toki_dashboard.roles import Role
from usage.models import Account, ApiKey
from usage.periods import dashboard_tz
from usage.services import create_account
from usage.teams.services import create_team, move_key

REQUESTS, VALUE = 6, Decimal("0.40")  # search-api's requests last month, usage value of each


def last_month_start() -> datetime:
    today = timezone.localdate(timezone=dashboard_tz())
    first = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    return datetime.combine(first, time(9), tzinfo=dashboard_tz())


@pytest.fixture
def teams_account(transactional_db) -> Account:
    """Last month, key search-api in team "search" and support-bot in "support"; an empty "growth"."""
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    start = last_month_start()
    bodies = [
        record(f"s-{n}", start + timedelta(days=n), "gpt-4o", 1_000, 200, str(VALUE), api_key="name:search-api")
        for n in range(REQUESTS)
    ] + [
        record(f"b-{n}", start + timedelta(days=n), "gpt-4o", 500, 100, "0.25", api_key="name:support-bot")
        for n in range(3)
    ]
    ingest(account, *bodies)
    search, support = create_team(account, "search"), create_team(account, "support")
    create_team(account, "growth")
    move_key(ApiKey.objects.get(name="search-api"), search, starts_at=None)
    move_key(ApiKey.objects.get(name="support-bot"), support, starts_at=None)
    refresh_allocations(account, now=timezone.now())  # what the worker does seconds later: paid follows
    return account


def sign_in(page: Page, username: str, role: Role) -> Page:
    group, _ = Group.objects.get_or_create(name=role.value)
    user = User.objects.create_user(username=username, password=PASSWORD)
    user.groups.add(group)
    member_of_every_account(user)
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")
    return page


def team_row(page: Page, team: str):
    return page.locator(f'#statement-team tr[data-key="{team}"]')


def test_move_a_key_to_a_team_and_see_the_report_follow(teams_account: Account, browsing: Browsing, screenshot):
    spent = f"{VALUE * REQUESTS:,.2f}"
    finance = sign_in(browsing.open(), "fiona", Role.FINANCE)
    finance.get_by_role("navigation", name="Main").get_by_role("link", name="Reports").click()
    expect(team_row(finance, "search")).to_contain_text(spent)  # the last complete month, by default
    expect(team_row(finance, "growth")).to_have_count(0)

    admin = sign_in(browsing.open(), "ada", Role.ADMIN)
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Teams", exact=True).click()
    expect(admin.locator('#teams-table tr[data-team="search"]')).to_contain_text("search-api")
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Keys & teams").click()
    admin.get_by_role("link", name="Edit search-api").click()
    admin.get_by_role("combobox", name="Team").select_option("growth")
    admin.get_by_label("All past usage").check()
    screenshot(admin, "key-move")
    admin.get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status")).to_contain_text(f"{REQUESTS} requests re-attributed")

    finance.reload()
    expect(team_row(finance, "growth")).to_contain_text(spent)
    expect(team_row(finance, "search")).to_have_count(0)
    expect(team_row(finance, "support")).to_be_visible()  # the other key stayed where it was
    screenshot(finance, "report-after-key-move", full_page=True)
    finance.get_by_role("navigation", name="Main").get_by_role("link", name="Spend").click()
    finance.locator("#period-last_month").click()
    finance.wait_for_url("**/spend/?period=last_month")
    expect(finance.locator('#spend-team-table tr[data-team="growth"]')).to_contain_text(spent)
    expect(finance.locator('#spend-team-table tr[data-team="search"]')).to_have_count(0)
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Teams", exact=True).click()
    expect(admin.locator('#teams-table tr[data-team="growth"]')).to_contain_text("search-api")
    screenshot(admin, "teams")
    assert browsing.problems(finance) == [] and browsing.problems(admin) == []
