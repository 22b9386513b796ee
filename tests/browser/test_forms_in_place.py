"""Forms show their errors in place: htmx swaps the refused form with its errors, focus lands on
the first invalid field, a summary at the top links to each field, and the address bar keeps the
page's own URL. Without JavaScript the same form posts, comes back with its errors, and the URL is
still the page's."""

from __future__ import annotations

from decimal import Decimal

from playwright.sync_api import expect

from billing.models import WalletEntry
from tests.browser.test_finance_pages import account_with_plans  # noqa: F401  (the fixture)
from usage.models import Account

REFUSED = "Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"


def test_an_invalid_top_up_is_swapped_in_place_with_focus_on_the_field_and_a_summary(
    account_with_plans: Account,  # noqa: F811
    browsing,
    log_in,
    screenshot,
):
    page = log_in(browsing.open())
    page.goto("/plans/")
    page.evaluate("window.__notReloaded = true")

    page.locator("#id_top_up-amount").fill("-3")
    page.locator("#top-up-submit").click()

    form = page.locator("#top-up-form")
    expect(form.locator(".form-errors")).to_contain_text("Amount:")
    expect(form.locator("#id_top_up-amount_error")).to_be_visible()
    expect(page.locator("#id_top_up-amount")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#id_top_up-amount")).to_be_focused()
    assert page.evaluate("window.__notReloaded") is True  # swapped, not a page load
    assert page.url.endswith("/plans/")
    screenshot(page, "form-error-in-place")

    form.locator(".form-errors a").first.click()  # the summary's link leads to the field
    expect(page.locator("#id_top_up-amount")).to_be_focused()

    page.locator("#id_top_up-amount").fill("12.50")
    page.locator("#top-up-submit").click()
    expect(page.locator(".messages")).to_contain_text("Recorded the top-up of 12.50 USD")
    assert page.url.endswith("/plans/")
    assert WalletEntry.objects.filter(amount=Decimal("12.50")).count() == 1
    assert [p for p in browsing.problems(page) if p != REFUSED] == []


def test_without_javascript_the_form_comes_back_with_its_errors_at_the_page_url(
    account_with_plans: Account,  # noqa: F811
    browsing,
    log_in,
):
    page = log_in(browsing.open(java_script_enabled=False))
    page.goto("/plans/")

    page.locator("#id_top_up-amount").fill("-3")
    page.locator("#top-up-submit").click()

    expect(page.locator("#top-up-form .form-errors")).to_contain_text("Amount:")
    expect(page.locator("#id_top_up-amount")).to_be_focused()  # autofocus, no script needed
    assert page.url.endswith("/plans/")  # the page's own URL, never a POST-only endpoint

    page.locator("#id_top_up-amount").fill("7.25")
    page.locator("#top-up-submit").click()
    expect(page.locator(".messages")).to_contain_text("Recorded the top-up of 7.25 USD")
    assert page.url.endswith("/plans/")
