"""The model catalogue in a real browser: from the Models page's warning to the catalogue,
a removed model's page and its lazy catalogue card, "Sync models now", and a phone's width."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from playwright.sync_api import Page, expect

from billing import tasks
from tests.browser.conftest import PASSWORD, member_of_every_account
from toki_dashboard.roles import Role
from usage.catalogue import services
from usage.catalogue.listing import ListedModel, Listing
from usage.catalogue.models import CatalogueSync
from usage.models import Account

pytestmark = pytest.mark.browser


@pytest.fixture
def engineer(transactional_db) -> User:
    group, _ = Group.objects.get_or_create(name=Role.ENGINEER.value)
    user = User.objects.create_user(username="enzo", password=PASSWORD)
    user.groups.add(group)
    return user


@pytest.fixture
def signed_in(browsing, engineer) -> Callable[..., Page]:
    def open_page(**options) -> Page:
        member_of_every_account(engineer)
        page = browsing.open(**options)
        page.goto("/login/")
        page.get_by_label("Username").fill(engineer.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/")
        return page

    return open_page


@pytest.fixture
def catalogue(account_with_usage: Account) -> Account:
    """Every model of the usage listed a week ago; deepseek-chat has left the list since."""
    names = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "deepseek-chat"]
    for at, listed in [(timezone.now() - timedelta(days=7), names), (timezone.now(), names[:3])]:
        run = services.start_sync(account_with_usage, now=at)
        models = tuple(ListedModel(name, context_length=128_000) for name in listed)
        services.apply_listing(run, Listing(models=models, source="/v1/models"), now=at)
    return account_with_usage


def test_a_removed_model_in_use_leads_from_the_models_page_to_the_catalogue_and_its_page(
    catalogue, signed_in, browsing, screenshot
):
    page = signed_in()
    page.goto("/models/")

    warning = page.locator("#unlisted-models")
    expect(warning).to_contain_text("deepseek-chat (removed")
    expect(page.locator("#models-table-grid").get_by_role("link", name="removed")).to_have_count(1)

    page.locator("#catalogue-link").click()
    page.wait_for_url("**/catalogue/**")
    expect(page.get_by_role("heading", name="Model catalogue", level=1)).to_be_visible()
    first = page.locator("#catalogue-table tbody tr").first
    expect(first).to_have_attribute("data-model", "deepseek-chat")
    expect(first).to_contain_text("Removed")
    screenshot(page, "catalogue")

    first.get_by_role("link", name="deepseek-chat").click()
    expect(page.locator("#model-unlisted")).to_contain_text("The provider removed deepseek-chat")
    card = page.locator("#card-catalogue")
    expect(card).to_contain_text("Removed")  # loaded on its own by htmx
    expect(card).to_contain_text("128,000 tokens")
    assert browsing.problems(page) == []


def test_sync_models_now_queues_a_sync_and_says_so(catalogue, signed_in, monkeypatch):
    # The live server runs in this process: the task is caught here instead of left on the broker.
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks.sync_model_catalogue, "delay", lambda *args: enqueued.append(args))
    page = signed_in()
    page.goto("/catalogue/")

    page.get_by_role("button", name="Sync models now").click()

    page.wait_for_url("**/catalogue/")
    expect(page.locator(".messages")).to_contain_text("model list was requested")
    assert enqueued == [(catalogue.pk, "manual")]
    assert not CatalogueSync.objects.filter(finished_at__isnull=True).exists()  # queued, not run in the request


def test_the_catalogue_fits_a_phone_without_scrolling_sideways(catalogue, signed_in, browsing):
    page = signed_in(viewport={"width": 390, "height": 844})
    page.goto("/catalogue/")
    expect(page.locator("#catalogue-table")).to_be_visible()

    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert browsing.problems(page) == []
