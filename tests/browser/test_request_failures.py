"""A failed request explained in a real browser: from the Errors page to one request, its
upstream message and the remedy of its cause, and on to its neighbours."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.browser.conftest import PASSWORD, member_of_every_account
from toki_dashboard.roles import Role
from usage.error_causes import remedy
from usage.models import Account, ErrorCause
from usage.schemas import RecordIn
from usage.services import create_account, record_usage

pytestmark = pytest.mark.browser

MESSAGE = "Unsupported parameter: 'logprobs' is not supported with this model."


@pytest.fixture
def engineer(transactional_db) -> User:
    group, _ = Group.objects.get_or_create(name=Role.ENGINEER.value)
    user = User.objects.create_user(username="erin", password=PASSWORD)
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


@pytest.fixture
def failing_account(transactional_db) -> Account:
    """Successes of gpt-4o (with temperature and tools), and two unsupported-parameter failures
    with the upstream's message, both sending logprobs and temperature, one seed too."""
    account = create_account(name="Acme", slug="acme")
    now = timezone.now().replace(microsecond=0)
    records = [
        RecordIn(
            request_id=f"ok-{n}",
            occurred_at=now - timedelta(hours=3, minutes=n),
            model="gpt-4o",
            api_key="name:backend",
            usage={"prompt_tokens": 100, "completion_tokens": 10},
            parameters=["temperature", "tools"],
            stream=n % 2 == 0,
        )
        for n in range(4)
    ]
    records += [
        RecordIn(
            request_id=f"fail-{n}",
            occurred_at=now - timedelta(hours=2, minutes=n),
            model="gpt-4o",
            api_key="name:backend",
            status_code=400,
            error={"type": "invalid_request_error", "code": "unsupported_parameter", "message": MESSAGE},
            parameters=["logprobs", "temperature"] + (["seed"] if n else []),
        )
        for n in range(2)
    ]
    record_usage(account, list(enumerate(records)), source="api")
    return account


def test_an_engineer_opens_a_failed_request_and_reads_its_message_and_remedy(
    failing_account, engineer, browsing, log_in_as, screenshot
):
    page = log_in_as(browsing.open(), engineer)
    page.goto("/errors/")
    row = page.locator(f"#errors-table tr[data-cause='{ErrorCause.UNSUPPORTED_PARAMETER}']")
    row.get_by_role("link", name="View requests").click()
    page.wait_for_url("**/requests/?**")
    page.locator("#requests-body table tbody tr th a").first.click()
    page.wait_for_url("**/requests/*/")

    failure = page.locator("#failure")
    expect(failure.get_by_role("heading")).to_contain_text("Unsupported parameter")
    expect(page.locator("#failure-type")).to_have_text("invalid_request_error")
    expect(page.locator("#failure-code")).to_have_text("unsupported_parameter")
    expect(page.locator("#failure-message")).to_have_text(MESSAGE)
    expect(page.locator("#failure-remedy")).to_contain_text(remedy(ErrorCause.UNSUPPORTED_PARAMETER))
    screenshot(page, "request-failure")

    first = page.locator("h1").inner_text()
    page.locator("#neighbours-model").get_by_role("link", name="Previous request of this model").click()
    expect(page.locator("h1")).not_to_have_text(first)
    page.locator("#neighbours-key").get_by_role("link", name="Next request of this key").click()
    expect(page.locator("h1")).to_have_text(first)
    assert not browsing.problems(page)


def test_the_errors_page_names_the_parameter_every_unsupported_parameter_failure_had(
    failing_account, engineer, browsing, log_in_as, screenshot
):
    page = log_in_as(browsing.open(), engineer)
    page.goto("/errors/")

    row = page.locator("#parameters-table tr[data-model='gpt-4o']")
    expect(row.locator("[data-column='common']")).to_contain_text("logprobs")
    expect(row.locator("[data-column='common']")).to_contain_text("temperature (also in successful calls")
    expect(row.locator("[data-column='sometimes']")).to_have_text("seed (1/2)")
    expect(row.locator("[data-column='finding']")).to_contain_text("Likely rejected: logprobs")
    screenshot(page, "errors-parameters")

    page.goto("/catalogue/")
    capabilities = page.locator("#capabilities-table tr[data-model='gpt-4o']")
    expect(capabilities.locator("[data-capability='streaming']")).to_contain_text("Yes")
    expect(capabilities.locator("[data-capability='tools']")).to_contain_text("Yes")
    expect(capabilities.locator("[data-capability='json_mode']")).to_have_text("not seen")
    assert not browsing.problems(page)
