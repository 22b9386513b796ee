"""Keys & teams and Settings in headless Chromium: an admin creates a token and sees it once,
an engineer is refused Settings, and screenshots of each page for people to look at."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, Browsing, member_of_every_account
from toki_dashboard.roles import Role
from usage.models import ApiKey, ApiToken


def make_user(username: str, role: Role) -> User:
    group, _ = Group.objects.get_or_create(name=role.value)
    user = User.objects.create_user(username=username, password=PASSWORD)
    user.groups.add(group)
    return user


@pytest.fixture
def sign_in(transactional_db: None) -> Callable[[Page, Role], Page]:
    def sign_in_(page: Page, role: Role) -> Page:
        user = make_user(f"{role.value}-user", role)
        member_of_every_account(user)
        page.goto("/login/")
        page.get_by_label("Username").fill(user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        return page

    return sign_in_


def test_an_admin_creates_a_token_and_sees_it_only_once(account_with_usage, browsing: Browsing, sign_in, screenshot):
    page = sign_in(browsing.open(), Role.ADMIN)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="API tokens")).to_be_visible()
    screenshot(page, "settings")

    page.get_by_label("Name").fill("log shipper on web-1")
    page.get_by_role("checkbox", name=re.compile(r"^\s*ingest")).check()
    page.get_by_role("checkbox", name=re.compile(r"^\s*read")).check()
    page.get_by_role("button", name="Create token").click()

    secret_box = page.get_by_label("The token", exact=True)  # the label: "Token" alone is a word of Chinese labels too
    expect(secret_box).to_have_value(re.compile(r"^toki_[A-Za-z0-9_-]{20,}$"))
    secret = secret_box.input_value()
    expect(page.get_by_text("it will not be shown again")).to_be_visible()
    screenshot(page, "settings-token-created")
    token = ApiToken.objects.get(name="log shipper on web-1")
    assert token.scopes == ["ingest", "read"]

    page.get_by_role("link", name="Done").click()
    expect(page.locator("#tokens-table")).to_contain_text("log shipper on web-1")
    assert secret not in page.content()
    # The answer to the POST is never cached: going back cannot show the token again.
    with contextlib.suppress(PlaywrightError):  # Chromium answers ERR_CACHE_MISS rather than resubmit
        page.go_back()
    expect(page.locator(f"input[value='{secret}']")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text(secret)
    assert browsing.problems(page) == []


def test_an_engineer_cannot_open_settings(account_with_usage, browsing: Browsing, sign_in):
    page = sign_in(browsing.open(), Role.ENGINEER)

    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings")).to_have_count(0)
    response = page.goto("/settings/")

    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You don’t have access to this page")).to_be_visible()
    assert page.goto("/settings/prices/").status == 403


def test_keys_page_draws_the_team_chart_and_filters_by_team(account_with_usage, browsing, sign_in, screenshot):
    ApiKey.objects.filter(name="prod-backend").update(team="platform", provider_status="enabled")
    ApiKey.objects.filter(name="support-bot").update(provider_status="disabled")
    page = sign_in(browsing.open(), Role.ENGINEER)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys & teams").click()

    expect(page.locator(".chart[data-figure='team-chart'] .bars path").first).to_be_attached()
    expect(page.locator("#keys-table")).to_contain_text("prod-backend")
    screenshot(page, "keys")
    # Moved to "platform" after its requests were recorded: listed for its team, its history
    # stays with the team it was recorded under.
    page.locator("#team-filter").select_option("platform")
    expect(page).to_have_url(re.compile(r"team=platform"))
    expect(page.locator("#keys-table")).to_contain_text("prod-backend")
    expect(page.locator("#keys-table")).not_to_contain_text("support-bot")
    assert browsing.problems(page) == []


def test_the_price_book_opens_prefilled_from_the_overviews_unpriced_warning(
    account_with_usage, browsing, sign_in, screenshot
):
    page = sign_in(browsing.open(), Role.ADMIN)

    page.locator(".banner--warning").get_by_role("link", name="deepseek-chat").click()

    expect(page).to_have_url(re.compile(r"/settings/prices/\?model=deepseek-chat"))
    expect(page.get_by_label("Model", exact=True)).to_have_value("deepseek-chat")
    screenshot(page, "settings-prices")
    page.get_by_label("Input per 1M tokens", exact=True).fill("0.27")
    page.get_by_label("Output per 1M tokens").fill("1.10")
    page.get_by_role("button", name="Add price").click()
    expect(page.locator(".messages")).to_contain_text("Added a price for deepseek-chat")
    expect(page.locator("#prices-table")).to_contain_text("deepseek-chat")
    page.goto("/settings/prices/")
    expect(page.locator("#prices-table")).to_contain_text("claude-3-5-sonnet")
    screenshot(page, "settings-prices-book")
    assert browsing.problems(page) == []
