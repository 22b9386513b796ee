"""Signing in and out, and the pages people see when they may not or cannot go somewhere."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD

pytestmark = pytest.mark.browser


def path_of(url: str) -> str:
    return urlparse(url).path


def test_anonymous_visit_lands_on_login_and_signing_in_shows_the_overview(page, finance_user, screenshot):
    page.goto("/")
    assert path_of(page.url) == "/login/"
    expect(page.get_by_role("heading", name="Sign in to TOKI Dashboard")).to_be_visible()
    screenshot(page, "login")

    page.get_by_label("Username").fill(finance_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    page.wait_for_url(lambda url: path_of(url) == "/")
    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Overview")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator(".user-badge")).to_contain_text("Fiona Fischer")
    # No account exists yet, so the overview explains how to create one.
    expect(page.get_by_role("heading", name="No TOKI account yet")).to_be_visible()
    screenshot(page, "overview-no-account")


def test_wrong_password_keeps_the_visitor_on_the_login_page_with_an_error(page, finance_user, screenshot):
    page.goto("/login/")
    page.get_by_label("Username").fill(finance_user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("alert")).to_contain_text("enter a correct username and password")
    assert path_of(page.url) == "/login/"
    screenshot(page, "login-error")


def test_log_out_button_ends_the_session(page, log_in, screenshot):
    log_in(page)
    page.get_by_role("button", name="Log out").click()

    page.wait_for_url(lambda url: path_of(url) == "/login/")
    page.goto("/")
    assert path_of(page.url) == "/login/"  # the session is gone, not just the page
    screenshot(page, "logged-out")


def test_htmx_posts_carry_the_csrf_token(page, log_in, screenshot):
    log_in(page)
    # Logging out is a POST that Django refuses without a valid CSRF token, so the
    # session only ends if htmx sent the token from <body hx-headers>.
    status = page.evaluate(
        """() => new Promise((resolve) => {
            const done = (event) => resolve(event.detail.xhr.status);
            document.body.addEventListener("htmx:afterRequest", done, {once: true});
            htmx.ajax("POST", "/logout/", {source: document.body, swap: "none"});
        })"""
    )

    assert status == 200  # the logout redirect, followed to the login page
    page.goto("/")
    assert path_of(page.url) == "/login/"
    screenshot(page, "logged-out-by-htmx")


def test_user_without_a_role_gets_the_forbidden_page(page, transactional_db, screenshot):
    User.objects.create_user(username="nobody", password=PASSWORD)
    page.goto("/login/")
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="You don’t have access to this page")).to_be_visible()
    expect(page.locator(".error-page")).to_contain_text("has no role yet")
    screenshot(page, "forbidden")


def test_unknown_address_shows_the_not_found_page(page, log_in, screenshot):
    log_in(page)
    response = page.goto("/no-such-page/")

    assert response is not None
    assert response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    screenshot(page, "not-found")


def test_after_too_many_wrong_passwords_the_lockout_page_explains_the_pause(page, finance_user, settings, screenshot):
    for attempt in range(settings.AXES_FAILURE_LIMIT):
        page.goto("/login/")
        page.get_by_label("Username").fill(finance_user.username)
        page.get_by_label("Password").fill(f"wrong-{attempt}")
        page.get_by_role("button", name="Sign in").click()

    expect(page.get_by_role("heading", name="Too many sign-in attempts")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("15 minutes")
    screenshot(page, "login-locked-out")

    page.goto("/login/")
    page.get_by_label("Username").fill(finance_user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Too many sign-in attempts")).to_be_visible()
