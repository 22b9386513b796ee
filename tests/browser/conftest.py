"""Headless Chromium (Debian's, never a downloaded one) driving the live server.

Playwright's sync API keeps an event loop running on the main thread while it is
open; Django refuses ORM calls beside a running loop, so the browser fixture lifts
that check exactly while it is open and puts it back afterwards, and closes the
browser when the browser tests are done, before any other test needs a free loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, ViewportSize, expect, sync_playwright

from toki_dashboard.roles import Role
from usage.models import Account, Membership, ModelPrice
from usage.schemas import RecordIn
from usage.services import create_account, record_usage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct-horse-battery"
# Parsing plotly's 4.8 MB takes seconds on a busy two-core CI runner; waits allow for that.
WAIT_MS = 20_000
expect.set_options(timeout=WAIT_MS)

# Runs in every document before its own scripts, and hands each violation to Python
# at once, so that violations on pages navigated away from are not lost.
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.reportCspViolation(event.violatedDirective + " blocked " + (event.blockedURI || "inline code"));
});
"""


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by one page."""

    def __init__(self, page: Page) -> None:
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        self.csp_violations: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.expose_function("reportCspViolation", self._on_csp_violation)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _on_csp_violation(self, description: str) -> None:
        self.csp_violations.append(description)

    def all(self) -> list[str]:
        return self.console_errors + self.page_errors + self.csp_violations


class Browsing:
    """Opens pages in fresh browser contexts (own cookies) against the live server and
    remembers what went wrong on each."""

    def __init__(self, browser: Browser, base_url: str) -> None:
        self.browser = browser
        self.base_url = base_url
        self.contexts: list[BrowserContext] = []
        self.watchers: dict[Page, PageProblems] = {}

    def open(
        self, *, color_scheme: str = "light", java_script_enabled: bool = True, viewport: ViewportSize = VIEWPORT
    ) -> Page:
        context = self.browser.new_context(
            base_url=self.base_url,
            viewport=viewport,
            color_scheme=color_scheme,
            java_script_enabled=java_script_enabled,
            reduced_motion="reduce",
        )
        context.add_init_script(REPORT_CSP_VIOLATIONS)
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        self.watchers[page] = PageProblems(page)
        return page

    def problems(self, page: Page) -> list[str]:
        return self.watchers[page].all()

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def browsing(browser: Browser, live_server) -> Iterator[Browsing]:
    session = Browsing(browser, live_server.url)
    yield session
    session.close()


@pytest.fixture
def page(browsing: Browsing) -> Page:
    return browsing.open()


@pytest.fixture
def screenshot() -> Callable[..., Path]:
    """Saves what the page shows to test-artifacts/screenshots/<name>.png, for people to look at."""

    def take(page: Page, name: str, *, full_page: bool = False) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def finance_user(transactional_db) -> User:
    # The live server needs transactional tests, whose flush also empties the role
    # groups a data migration made; recreate the one this user needs.
    group, _ = Group.objects.get_or_create(name=Role.FINANCE.value)
    user = User.objects.create_user(username="fiona", password=PASSWORD, first_name="Fiona", last_name="Fischer")
    user.groups.add(group)
    return user


def member_of_every_account(user: User) -> None:
    """Users see the accounts they are members of: make `user` a member of those the test made."""
    Membership.objects.bulk_create(
        [Membership(account=account, user=user) for account in Account.objects.all()], ignore_conflicts=True
    )


@pytest.fixture
def log_in(finance_user: User) -> Callable[[Page], Page]:
    def log_in_(page: Page) -> Page:
        member_of_every_account(finance_user)
        page.goto("/login/")
        page.get_by_label("Username").fill(finance_user.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        return page

    return log_in_


MODELS = {
    # model: (prompt tokens, completion tokens, requests per day, one failure in every N requests)
    "gpt-4o": (2_400, 620, 6, 9),
    "gpt-4o-mini": (1_800, 400, 14, 31),
    "claude-3-5-sonnet": (3_100, 900, 4, 29),
    "deepseek-chat": (2_000, 700, 8, 37),
}
KEYS = ["prod-backend", "data-pipeline", "support-bot"]
DAYS_OF_USAGE = 45  # more than 30, so the default period has a previous one to compare with


@pytest.fixture
def account_with_usage(transactional_db) -> Account:
    """Weeks of varied traffic for four models on three keys, one model left unpriced."""
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    since = timezone.now() - timedelta(days=400)
    for pattern, input_price, output_price in [
        ("gpt-4o", "2.50", "10.00"),
        ("gpt-4o-mini", "0.15", "0.60"),
        ("claude-3-5-sonnet", "3.00", "15.00"),
    ]:
        ModelPrice.objects.create(
            model_pattern=pattern,
            input_per_mtok=Decimal(input_price),
            output_per_mtok=Decimal(output_price),
            currency="USD",
            effective_from=since,
        )
    now = timezone.now()
    records: list[RecordIn] = []
    for day in range(DAYS_OF_USAGE):
        for model_index, (model, (prompt, completion, per_day, failure_every)) in enumerate(MODELS.items()):
            # Traffic grows towards today and wobbles per day, so the chart has a shape.
            count = per_day + (DAYS_OF_USAGE - day) // 6 + (day * (model_index + 3)) % 5
            for n in range(count):
                failed = n % failure_every == failure_every // 2
                records.append(
                    RecordIn(
                        request_id=f"{model}-{day}-{n}",
                        occurred_at=now - timedelta(days=day, minutes=7 * n + 3),
                        model=model,
                        api_key=f"name:{KEYS[(n + model_index) % len(KEYS)]}",
                        status_code=429 if failed else 200,
                        usage=None
                        if failed
                        else {"prompt_tokens": prompt + 37 * n, "completion_tokens": completion + 11 * n},
                    )
                )
    record_usage(account, list(enumerate(records)), source="api")
    return account
