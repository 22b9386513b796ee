"""Every page at 390 px wide (a phone) without horizontal scroll, as each role that may see it.

The pages come from walking the URL conf with the access matrix's rules (every GET page that
answers 200 to some role), so a page added later is measured without anyone listing it. Wide
tables scroll inside their own container; the document itself must not be wider than the
screen: `document.documentElement.scrollWidth <= 390`.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import get_resolver
from playwright.sync_api import Page, ViewportSize

from billing.models import AlertChannel, AlertKind, AlertRule, Budget
from tests.browser.conftest import PASSWORD, Browsing
from tests.browser.test_finance_pages import account_with_plans  # noqa: F401  (the fixture)
from tests.test_access_matrix import ADMIN, ENGINEER, FINANCE, Tenant, rule_for, url_of
from tests.test_authentication_required import walk
from toki_dashboard.roles import Role
from usage.models import Account, ApiKey, ImportJob, Membership, TokenScope, UsageRecord
from usage.services import choose_language, create_api_token

PHONE: ViewportSize = {"width": 390, "height": 844}
CHINESE = re.compile("[\u4e00-\u9fff]")
ROLES = {FINANCE: Role.FINANCE, ENGINEER: Role.ENGINEER, ADMIN: Role.ADMIN}
NOT_PAGES = ("api:", "admin:", "proxy:")  # JSON, the Django admin, the proxy


def pages_by_role(account: Account) -> dict[str, list[str]]:
    """Every HTML page of the URL conf with objects of `account`, per role allowed to open it."""
    rule = AlertRule.objects.create(
        account=account, name="Wallet low", kind=AlertKind.WALLET_BELOW, threshold=5, recipients=""
    )
    channels = [
        AlertChannel.objects.create(account=account, kind="email", address="finance-team@example.com", hint=name)
        for name in ("alerts", "spare")
    ]
    budgets = [Budget.objects.create(account=account, name=name, amount=10) for name in ("Monthly", "Spare")]
    record = UsageRecord.objects.filter(account=account, status_code=429).order_by("-occurred_at").first()
    key = ApiKey.objects.filter(account=account).order_by("name").first()
    assert record is not None and key is not None
    import_job = ImportJob.objects.create(account=account, file_name="usage.csv", size_bytes=10, format="csv")
    place = Tenant(account, record, key, rule, *channels, *budgets, import_job)
    token, _ = create_api_token(account=account, name="phone", scopes=[TokenScope.READ])
    found: dict[str, list[str]] = {role: [] for role in ROLES}
    for endpoint in walk(get_resolver()):
        access = rule_for(endpoint)
        assert access is not None, endpoint.view_name
        if endpoint.view_name.startswith(NOT_PAGES) or access.method != "get" or access.ok != 200:
            continue
        url = url_of(endpoint, place, token.pk)
        if url.endswith(".csv"):
            continue
        for role in ROLES:
            if role in access.allowed:
                found[role].append(url)
    return found


def signed_in(browsing: Browsing, role: str) -> Page:
    """A phone-sized page whose browser holds a session of a user with `role` (no login form)."""
    group, _ = Group.objects.get_or_create(name=ROLES[role].value)
    user = User.objects.create_user(username=f"phone-{role}", password=PASSWORD)
    user.groups.add(group)
    for account in Account.objects.all():
        Membership.objects.get_or_create(account=account, user=user)
    client = Client()
    client.force_login(user)
    page = browsing.open(viewport=PHONE)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": browsing.base_url}])
    return page


def overflow(page: Page, url: str) -> dict[str, Any] | None:
    """What is wider than the screen on `url`, once its htmx cards and charts are in; None if nothing."""
    page.goto(url)
    page.wait_for_load_state("networkidle")
    return page.evaluate(
        """(limit) => {
          const width = document.documentElement.scrollWidth;
          if (width <= limit) return null;
          const culprits = [...document.querySelectorAll("body *")]
            .filter((el) => el.getBoundingClientRect().right > limit + 1)
            .filter((el) => !(el.parentElement && el.parentElement.closest(".table-scroll, .app-nav")))
            .slice(0, 4)
            .map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
                 (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") +
                 " right=" + Math.round(el.getBoundingClientRect().right));
          return {width, culprits};
        }""",
        PHONE["width"],
    )


@pytest.fixture
def pages(account_with_plans: Account) -> dict[str, list[str]]:  # noqa: F811
    """Weeks of usage, plans (one expired), top-ups and balances: pages with full tables."""
    return pages_by_role(account_with_plans)


@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_fits_a_390_px_phone_without_horizontal_scroll(
    browsing: Browsing, pages: dict[str, list[str]], role: str
):
    page = signed_in(browsing, role)
    measured = {url: overflow(page, url) for url in pages[role]}

    too_wide = {url: found for url, found in measured.items() if found is not None}
    print(f"{role}: {len(measured)} pages measured at {PHONE['width']} px")
    assert len(measured) >= 5
    assert too_wide == {}, "\n".join(f"{url}: {found}" for url, found in too_wide.items())


def test_the_login_page_and_the_error_pages_fit_a_phone(browsing: Browsing, account_with_usage: Account):
    anonymous = browsing.open(viewport=PHONE)
    assert overflow(anonymous, "/login/") is None

    engineer = signed_in(browsing, ENGINEER)
    assert overflow(engineer, "/plans/") is None  # the 403 page
    assert overflow(engineer, "/no-such-page/") is None  # the 404 page


LEGEND_CLEARANCE = """(container) => {
  // Boxes of the legend, the plot area and the x axis' tick labels: the legend may touch none.
  const box = (el) => el.getBoundingClientRect();
  const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  const legend = container.querySelector("g.legend");
  if (!legend || !legend.getBBox().width) return {legend: false};
  const area = container.querySelector("g.cartesianlayer .plot, rect.nsewdrag");
  const ticks = [...container.querySelectorAll("g.xtick text, g.ytick text, g.g-xtitle text, g.g-ytitle text")];
  const hits = ticks.filter((t) => overlap(box(legend), box(t))).map((t) => t.textContent);
  return {legend: true, overPlot: area ? overlap(box(legend), box(area)) : null, overTicks: hits,
          below: area ? box(legend).top >= box(area).bottom : null};
}"""


@pytest.mark.parametrize(
    ("role", "url", "chart"),
    [
        (FINANCE, "/", "#overview-body .chart[data-figure]"),
        (FINANCE, "/plans/forecast-chart/", ".chart[data-figure]"),
        (ENGINEER, "/models/gpt-4o/", ".chart[data-figure]"),
    ],
)
def test_chart_legends_sit_below_the_plot_on_a_phone_clear_of_the_axes(
    browsing: Browsing,
    account_with_plans: Account,  # noqa: F811
    screenshot,
    role: str,
    url: str,
    chart: str,
):
    page = signed_in(browsing, role)
    page.goto(url)
    page.wait_for_load_state("networkidle")
    charts = page.locator(chart)
    charts.first.locator(".main-svg").first.wait_for(state="attached")

    found = [charts.nth(i).evaluate(LEGEND_CLEARANCE) for i in range(charts.count())]

    screenshot(page, f"phone-chart-{url.strip('/').replace('/', '-') or 'overview'}", full_page=True)
    with_legend = [f for f in found if f["legend"]]
    assert with_legend, f"no chart with a legend on {url}: {found}"
    for clearance in with_legend:
        assert clearance == {"legend": True, "overPlot": False, "overTicks": [], "below": True}


def test_every_finance_page_fits_a_390_px_phone_in_chinese(browsing: Browsing, pages: dict[str, list[str]]):
    """Chinese labels are shorter or longer than English ones: the layout holds either way."""
    page = signed_in(browsing, FINANCE)
    choose_language(user_id=User.objects.get(username=f"phone-{FINANCE}").pk, language="zh-hans")
    measured = {url: overflow(page, url) for url in pages[FINANCE]}

    too_wide = {url: found for url, found in measured.items() if found is not None}
    print(f"finance in Chinese: {len(measured)} pages measured at {PHONE['width']} px")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert len(measured) >= 5
    assert too_wide == {}, "\n".join(f"{url}: {found}" for url, found in too_wide.items())


def test_every_engineer_page_fits_a_390_px_phone_in_chinese(browsing: Browsing, pages: dict[str, list[str]]):
    """The engineers' pages in Chinese: longer labels in narrow metric cards, wrapped remedies."""
    page = signed_in(browsing, ENGINEER)
    choose_language(user_id=User.objects.get(username=f"phone-{ENGINEER}").pk, language="zh-hans")
    measured = {url: overflow(page, url) for url in pages[ENGINEER]}

    too_wide = {url: found for url, found in measured.items() if found is not None}
    print(f"engineer in Chinese: {len(measured)} pages measured at {PHONE['width']} px")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert len(measured) >= 5
    assert too_wide == {}, "\n".join(f"{url}: {found}" for url, found in too_wide.items())


def test_chinese_chart_legends_sit_below_the_plot_on_a_phone_clear_of_the_axes(
    browsing: Browsing,
    account_with_plans: Account,  # noqa: F811
    screenshot,
):
    """Legends and axis titles in Chinese (built in Python in the reader's language) keep clear of the plot."""
    url = "/models/gpt-4o/"  # stacked prompt and completion tokens: a legend of two longer labels
    page = signed_in(browsing, ENGINEER)
    choose_language(user_id=User.objects.get(username=f"phone-{ENGINEER}").pk, language="zh-hans")
    page.goto(url)
    page.wait_for_load_state("networkidle")
    charts = page.locator(".chart[data-figure]")
    charts.first.locator(".main-svg").first.wait_for(state="attached")

    found = [charts.nth(i).evaluate(LEGEND_CLEARANCE) for i in range(charts.count())]
    legends = page.evaluate("""() => [...document.querySelectorAll(".chart g.legend, .chart g.g-ytitle")]
      .map((el) => el.textContent).join(" ")""")

    screenshot(page, f"phone-chart-zh-{url.strip('/').replace('/', '-')}", full_page=True)
    assert CHINESE.search(legends), legends
    with_legend = [f for f in found if f["legend"]]
    assert with_legend, f"no chart with a legend on {url}: {found}"
    for clearance in with_legend:
        assert clearance == {"legend": True, "overPlot": False, "overTicks": [], "below": True}
