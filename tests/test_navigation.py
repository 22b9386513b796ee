"""The main menu: each role sees its own pages, and a page lights up the section it belongs to."""

from __future__ import annotations

import re

import pytest

MENU_LINK = re.compile(r'<a class="app-nav__link" href="(?P<url>[^"]+)"(?P<current> aria-current="page")?>')


def menu(response) -> dict[str, bool]:
    return {m["url"]: bool(m["current"]) for m in MENU_LINK.finditer(response.content.decode())}


def test_finance_sees_spend_teams_plans_reports_rates_and_import_but_not_engineering_or_admin_pages(
    finance_client, account
):
    assert list(menu(finance_client.get("/"))) == [
        "/",
        "/spend/",
        "/teams/",
        "/plans/",
        "/reports/",
        "/budgets/",
        "/rates/",
        "/imports/",
    ]


def test_engineers_see_usage_models_requests_errors_keys_and_teams(engineer_client, account):
    assert list(menu(engineer_client.get("/"))) == [
        "/",
        "/spend/",
        "/models/",
        "/requests/",
        "/errors/",
        "/keys/",
        "/teams/",
    ]


def test_admins_see_every_page_including_alerts_and_settings(admin_client, account):
    links = list(menu(admin_client.get("/")))

    assert links[-2:] == ["/alerts/", "/settings/"]
    assert {"/plans/", "/models/", "/requests/"} <= set(links)


@pytest.mark.parametrize(
    ("path", "section"),
    [
        ("/", "/"),
        ("/models/gpt-4o/", "/models/"),
        ("/settings/prices/", "/settings/"),
        ("/requests/", "/requests/"),
        ("/imports/", "/imports/"),
    ],
)
def test_the_page_marks_the_section_it_belongs_to_and_only_that_one(admin_client, account, path, section):
    marked = [url for url, current in menu(admin_client.get(path)).items() if current]

    assert marked == [section]
