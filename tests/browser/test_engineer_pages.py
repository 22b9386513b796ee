"""The engineer pages in a real browser: Models (htmx filter and sort), a model's lazy cards,
the request log and its CSV download, Errors, and the 403 a finance user meets there."""

from __future__ import annotations

import csv
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, member_of_every_account
from toki_dashboard.roles import Role
from usage.models import UsageRecord
from usage.periods import Period

pytestmark = pytest.mark.browser

MARKER = "window.sameDocumentMarker"


@pytest.fixture
def engineer_user(transactional_db) -> User:
    group, _ = Group.objects.get_or_create(name=Role.ENGINEER.value)
    user = User.objects.create_user(username="enzo", password=PASSWORD, first_name="Enzo", last_name="Engel")
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


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def model_rows(page: Page) -> list[str]:
    return page.locator("#models-table tbody th").all_inner_texts()


def test_the_model_filter_and_sorting_swap_only_the_table_and_change_the_url(
    account_with_usage, engineer_user, browsing, log_in_as, screenshot
):
    page = log_in_as(browsing.open(), engineer_user)
    page.goto("/models/")
    expect(page.get_by_role("heading", name="Models", level=1)).to_be_visible()
    expect(page.locator("#models-table tbody tr")).to_have_count(4)
    screenshot(page, "models")
    page.evaluate(f"{MARKER} = 'still here'")

    page.get_by_label("Model", exact=True).press_sequentially("mini")

    page.wait_for_url(lambda url: "q=mini" in url)
    expect(page.locator("#models-table tbody tr")).to_have_count(1)
    assert model_rows(page) == ["gpt-4o-mini"]
    assert page.evaluate(MARKER) == "still here"  # no full page load

    page.get_by_label("Model", exact=True).fill("")
    page.get_by_label("Model", exact=True).dispatch_event("input")
    expect(page.locator("#models-table tbody tr")).to_have_count(4)
    page.get_by_role("link", name="Requests", exact=True).last.click()  # the column header, not the menu tab

    page.wait_for_url(lambda url: "sort=-requests" in url)
    expect(page.locator("th[aria-sort='descending']")).to_contain_text("Requests")
    counts = [int(t.replace(",", "")) for t in page.locator("#models-table tbody td:nth-of-type(1)").all_inner_texts()]
    assert counts == sorted(counts, reverse=True)
    assert page.evaluate(MARKER) == "still here"

    # A period change keeps the sort (the picker was refreshed out of band with the table).
    page.get_by_role("button", name="Last 7 days").click()
    page.wait_for_url(lambda url: "period=7d" in url)
    assert query_of(page)["sort"] == ["-requests"]
    assert page.evaluate(MARKER) == "still here"
    assert browsing.problems(page) == []


def test_a_models_page_loads_each_card_on_its_own(account_with_usage, engineer_user, browsing, log_in_as, screenshot):
    page = log_in_as(browsing.open(), engineer_user)
    page.goto("/models/")
    page.get_by_role("link", name="gpt-4o", exact=True).click()

    page.wait_for_url("**/models/gpt-4o/**")
    expect(page.get_by_role("heading", name="gpt-4o", level=1)).to_be_visible()
    expect(page.locator("#card-usage .chart[data-figure='model-tokens-chart'] .main-svg").first).to_be_attached()
    expect(page.locator("#card-usage .chart[data-figure='model-cost-chart'] .main-svg").first).to_be_attached()
    expect(page.locator("#card-errors")).to_contain_text("Rate limited")
    expect(page.locator("#card-top")).to_contain_text("prod-backend")
    expect(page.locator("#card-recent tbody tr").first).to_be_visible()
    expect(page.locator("#card-estimator")).to_contain_text("Token estimator")
    expect(page.locator("#card-latency")).to_contain_text("Latency")
    expect(page.locator(".card--lazy")).to_have_count(0)
    screenshot(page, "model-detail")
    screenshot(page, "model-detail-full", full_page=True)
    assert browsing.problems(page) == []


def test_the_request_log_filters_with_htmx_and_its_csv_download_parses(
    account_with_usage, engineer_user, browsing, log_in_as, screenshot, tmp_path
):
    page = log_in_as(browsing.open(), engineer_user)
    page.goto("/requests/")
    expect(page.locator("#requests-table tbody tr")).to_have_count(50)
    screenshot(page, "requests")
    page.evaluate(f"{MARKER} = 'still here'")

    page.get_by_label("Model").select_option("claude-3-5-sonnet")

    page.wait_for_url(lambda url: "model=claude-3-5-sonnet" in url)
    expect(page.locator("#requests-table tbody tr").first).to_contain_text("claude-3-5-sonnet")
    assert set(page.locator("#requests-table .table__model").all_inner_texts()) == {"claude-3-5-sonnet"}
    assert page.evaluate(MARKER) == "still here"

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / "requests.csv"
    download_info.value.save_as(path)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))

    period = Period.from_query({})
    expected = UsageRecord.objects.filter(
        account=account_with_usage,
        model="claude-3-5-sonnet",
        occurred_at__gte=period.start,
        occurred_at__lt=period.end,
    )
    assert sorted(r["request_id"] for r in rows) == sorted(expected.values_list("request_id", flat=True))
    assert {r["model"] for r in rows} == {"claude-3-5-sonnet"}

    page.locator("#requests-table tbody th a").first.click()
    page.wait_for_url("**/requests/*/")
    expect(page.get_by_role("heading", name="Tokens and usage value")).to_be_visible()
    screenshot(page, "request-detail")
    assert browsing.problems(page) == []


def test_the_errors_page_draws_failures_by_cause(account_with_usage, engineer_user, browsing, log_in_as, screenshot):
    page = log_in_as(browsing.open(), engineer_user)
    page.goto("/errors/")

    expect(page.locator("#errors-table")).to_contain_text("Rate limited")
    expect(page.locator(".chart[data-figure='errors-chart'] .main-svg").first).to_be_attached()
    screenshot(page, "errors")
    page.get_by_role("link", name="View requests →").first.click()
    page.wait_for_url(lambda url: "error_cause=rate_limited" in url)
    expect(page.locator("#requests-table tbody tr").first).to_contain_text("Rate limited")
    assert browsing.problems(page) == []


def test_a_finance_user_opening_the_request_log_sees_the_403_page(account_with_usage, browsing, log_in, screenshot):
    page = log_in(browsing.open())
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Requests")).to_have_count(0)

    response = page.goto("/requests/")

    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You don’t have access to this page")).to_be_visible()
    screenshot(page, "requests-forbidden")
