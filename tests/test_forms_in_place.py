"""Every form of the app shows its errors in place, the same way (toki_dashboard.forms):

- refused without JavaScript: the page again (400) with a summary at the top of the form that
  links to each invalid field, the first invalid field autofocused, and the form posting to a URL
  that is a page (GET answers it), so the address bar never keeps a POST-only endpoint;
- refused through htmx: only the form (422, swapped in place of the form), the same summary and
  focus;
- saved: a redirect (POST-redirect-GET), or for htmx an HX-Redirect to the same page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from django.test import Client

from tests.billing.conftest import buy, ingest, record
from usage.models import Account, ApiKey


@dataclass(frozen=True)
class Case:
    client: str
    url: str  # where the page's form posts (also a page)
    data: dict[str, str] = field(default_factory=dict)
    form_id: str = ""


CASES = {
    "top-up": Case("finance_client", "/plans/", {"form": "top_up", "top_up-amount": "-5"}, "top-up-form"),
    "adjustment": Case(
        "finance_client", "/plans/", {"form": "adjustment", "adjustment-amount": "x"}, "adjustment-form"
    ),
    "purchase": Case("finance_client", "/plans/", {"form": "purchase", "purchase-tokens": "-1"}, "purchase-form"),
    "void": Case("finance_client", "/plans/", {"form": "void", "purchase": "PURCHASE", "reason": ""}, "void-PURCHASE"),
    "budget": Case("finance_client", "/budgets/", {"name": "", "amount": "-1"}, "budget-form-form"),
    "rate": Case("finance_client", "/rates/", {"rate": "0"}, "rate-form"),
    "alert rule": Case("admin_client", "/alerts/", {"name": ""}, "rule-form-form"),
    "alert channel": Case("admin_client", "/alerts/", {"form": "channel", "channel-kind": "webhook"}, "channel-form"),
    "price": Case("admin_client", "/settings/prices/", {"model_pattern": ""}, "price-form"),
    "token": Case("admin_client", "/settings/", {"form": "token", "name": ""}, "token-form"),
    "token scopes": Case(
        "admin_client", "/settings/", {"form": "token", "name": "n", "account": "ACCOUNT"}, "token-form"
    ),
    "key": Case("engineer_client", "/keys/KEY/edit/", {"name": ""}, "key-form"),
}


@pytest.fixture
def objects(account: Account) -> dict[str, str]:
    """A purchase to void and a key to edit, in the test's account."""
    ingest(account, record("r1", datetime(2026, 3, 2, tzinfo=UTC), "gpt-4o", 10, 10, "0.01", api_key="name:prod"))
    purchase = buy(account, "pack", 1_000, datetime(2026, 3, 1, tzinfo=UTC), datetime(2036, 3, 1, tzinfo=UTC))
    return {"PURCHASE": str(purchase), "KEY": str(ApiKey.objects.get(account=account).pk), "ACCOUNT": str(account.pk)}


def _fill(text: str, objects: dict[str, str]) -> str:
    for name, value in objects.items():
        text = text.replace(name, value)
    return text


def _prepared(case: Case, objects: dict[str, str]) -> tuple[str, dict[str, str], str]:
    return (
        _fill(case.url, objects),
        {name: _fill(value, objects) for name, value in case.data.items()},
        _fill(case.form_id, objects),
    )


def _form_html(html: str, form_id: str) -> str:
    start = html.index(f'id="{form_id}"')
    start = html.rindex("<", 0, start)
    tag = html[start + 1 : html.index(" ", start)]
    return html[start : html.index(f"</{tag}>", start)]


def _assert_errors_in_place(form: str) -> None:
    summary = re.search(r'<div class="form-errors" role="alert".*?</div>', form, re.S)
    assert summary, "no error summary at the top of the form"
    focused = re.findall(r"<(?:input|select|textarea|div|fieldset)\b[^>]*\sautofocus[\s>][^>]*>?", form)
    assert len(focused) == 1, focused
    links = re.findall(r'<a href="#([^"]+)">', summary.group(0))
    if "form-errors" in focused[0]:  # only form-wide errors: the summary itself takes focus
        return
    assert 'aria-invalid="true"' in focused[0]
    first_id = re.search(r'\sid="([^"]+)"', focused[0]).group(1)
    assert links and links[0] == first_id, (links, first_id)
    for anchor in links:
        assert f'id="{anchor}"' in form  # every link leads to a field of this form


@pytest.mark.parametrize("name", CASES)
def test_a_refused_form_comes_back_on_its_page_with_a_summary_and_focus_on_the_first_invalid_field(
    request, account: Account, objects: dict[str, str], name: str
):
    case = CASES[name]
    client: Client = request.getfixturevalue(case.client)
    url, data, form_id = _prepared(case, objects)

    response = client.post(url, data)

    assert response.status_code == 400
    html = response.content.decode()
    assert "<html" in html
    form = _form_html(html, form_id)
    _assert_errors_in_place(form)
    assert f'action="{url}"' in form and f'hx-post="{url}"' in form
    assert client.get(url).status_code == 200  # the address bar keeps a page, not a POST endpoint


@pytest.mark.parametrize("name", CASES)
def test_through_htmx_only_the_refused_form_comes_back_to_be_swapped_in_place(
    request, account: Account, objects: dict[str, str], name: str
):
    case = CASES[name]
    client: Client = request.getfixturevalue(case.client)
    url, data, form_id = _prepared(case, objects)

    response = client.post(url, data, headers={"HX-Request": "true"})

    assert response.status_code == 422
    html = response.content.decode()
    assert "<html" not in html and "app-nav" not in html
    first_element = re.search(r"<(form|details)\b[^>]*>", html)
    assert first_element and f'id="{form_id}"' in first_element.group(0)  # the form itself, to swap for the old one
    _assert_errors_in_place(_form_html(html, form_id))


def test_a_saved_form_redirects_and_through_htmx_asks_the_browser_to(finance_client: Client, account: Account):
    plain = finance_client.post(
        "/rates/", {"from_currency": "EUR", "to_currency": "USD", "rate": "1.08", "effective_from": "2026-03-01T00:00"}
    )
    htmx = finance_client.post(
        "/rates/",
        {"from_currency": "GBP", "to_currency": "USD", "rate": "1.27", "effective_from": "2026-03-01T00:00"},
        headers={"HX-Request": "true"},
    )

    assert plain.status_code == 302 and plain["Location"] == "/rates/"
    assert htmx.status_code == 200 and htmx["HX-Redirect"] == "/rates/"
