"""States that tell the truth on the usage pages: period comparisons that compare like with
like, changes coloured by direction and size, and unpriced models shown as unpriced."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from usage.periods import Period
from usage.schemas import validate_records
from usage.services import record_usage
from usage.templatetags.usage_format import change_badge


def ingest(account, *records: dict) -> None:
    valid, rejected = validate_records(list(records))
    assert not rejected, rejected
    record_usage(account, valid, source="api")


def rec(request_id: str, days_ago: int, model: str = "gpt-4o", cost: str | None = "1.00") -> dict:
    body = {
        "request_id": request_id,
        "occurred_at": (timezone.now() - timedelta(days=days_ago)).isoformat(),
        "model": model,
        "usage": {"prompt_tokens": 1_000, "completion_tokens": 100},
    }
    return body | ({"cost": cost} if cost is not None else {})


# --- Period comparisons -------------------------------------------------------------------------


def test_this_month_is_compared_with_the_same_days_of_the_previous_month():
    period = Period.preset_for("this_month", date(2026, 12, 4))

    assert period.previous() == Period("custom", date(2026, 11, 1), date(2026, 11, 4))


def test_this_month_late_in_a_long_month_stops_at_the_end_of_a_shorter_one():
    period = Period.preset_for("this_month", date(2026, 3, 31))

    assert period.previous() == Period("custom", date(2026, 2, 1), date(2026, 2, 28))


def test_a_named_month_is_compared_with_the_whole_previous_month():
    period = Period.preset_for("last_month", date(2026, 4, 10))  # March

    assert period.previous() == Period("custom", date(2026, 2, 1), date(2026, 2, 28))


def test_a_custom_range_of_one_whole_month_is_a_named_month():
    period = Period("custom", date(2026, 3, 1), date(2026, 3, 31))

    assert period.previous() == Period("custom", date(2026, 2, 1), date(2026, 2, 28))
    assert period.comparison_label == "February 2026"


def test_rolling_periods_keep_comparing_with_the_days_just_before():
    period = Period.preset_for("7d", date(2026, 12, 4))

    assert period.previous() == Period("custom", date(2026, 11, 21), date(2026, 11, 27))
    assert period.comparison_label == "the previous 7 days (21 Nov – 27 Nov 2026)"


def test_the_overview_names_the_period_it_compares_with(finance_client: Client, account):
    html = finance_client.get(reverse("usage:overview"), {"period": "this_month"}).content.decode()
    today = timezone.localdate()
    previous = Period.preset_for("this_month", today).previous()

    assert f"compared with the same days of {previous.first_day:%B}" in html
    assert f"{previous.last_day:%-d %b %Y})" in html


# --- Changes coloured by direction and size ----------------------------------------------------------


def classes(badge: str) -> set[str]:
    match = re.search(r'class="([^"]+)"', badge)
    assert match, badge
    return set(match.group(1).split())


def test_a_spend_change_of_plus_397_percent_is_coloured_as_a_large_rise():
    badge = change_badge(497, 100, kind="money")

    assert "+397%" in badge
    assert {"change--up", "change--large", "change--bad"} <= classes(badge)
    assert "change--neutral" not in classes(badge)


def test_a_small_change_stays_quiet_and_a_large_fall_in_spend_is_good_news():
    assert {"change--small", "change--neutral"} <= classes(change_badge(103, 100, kind="money"))
    assert {"change--down", "change--large", "change--good"} <= classes(change_badge(40, 100, kind="money"))


def test_a_large_change_in_volume_stands_out_without_being_called_good_or_bad():
    found = classes(change_badge(300, 100, kind="volume"))

    assert {"change--up", "change--large", "change--notable"} <= found
    assert not found & {"change--bad", "change--good", "change--neutral"}


def test_the_overview_colours_a_large_rise_in_usage_value(finance_client: Client, account):
    ingest(account, *[rec(f"now-{n}", 1) for n in range(5)], rec("before", 8))

    html = finance_client.get(reverse("usage:overview"), {"period": "7d"}).content.decode()
    value_card = re.search(r'id="overview-usage-value-card".*?</article>', html, re.S)

    assert value_card and "change--large" in value_card.group(0) and "change--bad" in value_card.group(0)


# --- Unpriced is a state --------------------------------------------------------------------------


@pytest.fixture
def unpriced(account) -> None:
    ingest(account, rec("priced", 1), rec("unpriced-1", 1, model="mystery-model", cost=None))


def model_row(html: str, model: str) -> str:
    for row in re.findall(r"<tr.*?</tr>", html, re.S):
        if f">{model}<" in row:
            return row
    raise AssertionError(f"no row for {model}")


def cells(row: str) -> list[str]:
    return [" ".join(re.sub(r"<[^>]+>", "", cell).split()) for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_models_table_shows_an_unpriced_model_as_unpriced_not_zero(admin_client: Client, unpriced):
    html = admin_client.get(reverse("usage:models")).content.decode()
    row = model_row(html, "mystery-model")
    value, share = cells(row)[4:6]

    assert value == "unpriced" and share == "—"
    assert f"{reverse('usage:prices')}?model=mystery-model" in row
    assert "excludes 1 unpriced request" in html


def test_engineers_see_unpriced_without_a_link_they_cannot_use(engineer_client: Client, unpriced):
    row = model_row(engineer_client.get(reverse("usage:models")).content.decode(), "mystery-model")

    assert "unpriced" in row and reverse("usage:prices") not in row


def test_the_overview_top_models_show_an_unpriced_model_as_unpriced(finance_client: Client, unpriced):
    html = finance_client.get(reverse("usage:overview")).content.decode()
    table = re.search(r'id="top-models-title".*?</table>', html, re.S)
    assert table
    row = model_row(table.group(0), "mystery-model")

    assert "unpriced" in row and "0.00" not in row and ">0%<" not in row
