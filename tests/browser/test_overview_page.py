"""The overview in a real browser: charts drawn under the CSP, period changes swapped by htmx."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from usage.periods import dashboard_tz

pytestmark = pytest.mark.browser

CHART_SVG = ".chart[data-figure='spend-chart'] .main-svg"


def query_of(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlparse(page.url).query)


def wait_for_live_chart(page: Page) -> None:
    """Waits until plotly itself has drawn the chart. The SVG alone is not proof: htmx's
    history cache hands back a copy of old markup, SVG included, that plotly never saw."""
    page.wait_for_function(
        """() => {
            const chart = document.querySelector(".chart[data-figure='spend-chart']");
            return chart !== null && chart._fullLayout !== undefined && chart.querySelector(".main-svg") !== null;
        }"""
    )


def tick_label_colour(page: Page) -> str:
    return page.locator(".chart .xtick text").first.evaluate("el => getComputedStyle(el).fill")


def test_overview_draws_the_spend_chart_with_no_console_errors_or_csp_violations(
    account_with_usage, browsing, log_in, screenshot
):
    page = browsing.open()
    log_in(page)
    response = page.goto("/")

    assert response is not None
    # The policy is really in force, so an absence of violations means something.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.locator(CHART_SVG).first).to_be_attached()
    expect(page.locator(".chart .bars path").first).to_be_attached()
    expect(page.locator(".chart .legend")).to_contain_text("claude-3-5-sonnet")
    expect(page.locator(".metric").first).to_contain_text("USD")
    expect(page.get_by_role("row").filter(has_text="gpt-4o-mini")).to_have_count(1)
    unpriced = page.locator(".banner--warning")
    expect(unpriced).to_contain_text("unpriced")
    expect(unpriced).to_contain_text("deepseek-chat")
    expect(unpriced.get_by_role("link")).to_have_count(0)  # adding a price is for admins
    screenshot(page, "overview")

    assert browsing.problems(page) == []


def test_chart_colours_follow_the_dark_colour_scheme(account_with_usage, browsing, log_in, screenshot):
    light = log_in(browsing.open(color_scheme="light"))
    dark = log_in(browsing.open(color_scheme="dark"))
    for page in (light, dark):
        expect(page.locator(CHART_SVG).first).to_be_attached()

    assert tick_label_colour(light) != tick_label_colour(dark)
    screenshot(dark, "overview-dark")
    assert browsing.problems(dark) == []


def test_choosing_a_preset_swaps_the_body_with_htmx_and_pushes_the_url(
    account_with_usage, browsing, log_in, screenshot
):
    page = log_in(browsing.open())
    expect(page.locator(CHART_SVG).first).to_be_attached()
    expect(page.locator("#period-30d")).to_have_attribute("aria-pressed", "true")
    # A full page load would discard this; an htmx swap keeps the same document.
    page.evaluate("window.sameDocumentMarker = 'still here'")

    page.get_by_role("button", name="Last 7 days").click()

    page.wait_for_url(lambda url: "period=7d" in url)
    expect(page.locator("#period-7d")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#period-30d")).to_have_attribute("aria-pressed", "false")
    first_day = (timezone.localdate(timezone=dashboard_tz()) - timedelta(days=6)).strftime("%-d %b %Y")
    expect(page.locator("#period-summary")).to_contain_text(first_day)
    wait_for_live_chart(page)
    assert page.evaluate("window.sameDocumentMarker") == "still here"
    assert query_of(page) == {"period": ["7d"]}
    screenshot(page, "overview-7d")

    page.go_back()  # htmx restores the previous period from its history cache
    page.wait_for_url(lambda url: "period=7d" not in url)
    expect(page.locator("#period-30d")).to_have_attribute("aria-pressed", "true")
    wait_for_live_chart(page)
    assert page.evaluate("window.sameDocumentMarker") == "still here"
    assert browsing.problems(page) == []


def test_custom_range_is_applied_with_htmx_and_bookmarkable(account_with_usage, browsing, log_in, screenshot):
    page = log_in(browsing.open())
    today = timezone.localdate(timezone=dashboard_tz())
    start, end = today - timedelta(days=13), today - timedelta(days=7)

    page.get_by_label("First day").fill(start.isoformat())
    page.get_by_label("Last day").fill(end.isoformat())
    page.get_by_role("button", name="Apply").click()

    page.wait_for_url(lambda url: "period=custom" in url)
    assert query_of(page) == {"period": ["custom"], "start": [start.isoformat()], "end": [end.isoformat()]}
    expect(page.locator("#period-summary")).to_contain_text(end.strftime("%-d %b %Y"))
    expect(page.locator(".date-range")).to_have_class("date-range date-range--active")
    wait_for_live_chart(page)

    page.reload()  # the pushed URL serves the same period as a full page
    expect(page.locator("#period-summary")).to_contain_text(start.strftime("%-d %b %Y"))
    wait_for_live_chart(page)
    screenshot(page, "overview-custom-range")
    assert browsing.problems(page) == []


def test_period_picker_works_without_javascript(account_with_usage, browsing, log_in, screenshot):
    page = log_in(browsing.open(java_script_enabled=False))

    page.get_by_role("button", name="Last month").click()

    page.wait_for_url(lambda url: "period=last_month" in url)
    expect(page.locator("#period-last_month")).to_have_attribute("aria-pressed", "true")
    screenshot(page, "overview-without-javascript")


def test_overview_fits_a_phone_screen_without_sideways_scrolling(account_with_usage, browsing, log_in, screenshot):
    page = log_in(browsing.open(viewport={"width": 390, "height": 844}))
    expect(page.locator(CHART_SVG).first).to_be_attached()

    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    assert overflow <= 0
    screenshot(page, "overview-phone", full_page=True)
    assert browsing.problems(page) == []
