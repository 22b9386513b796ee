"""Finance reads spend by team for last month and its change against the month before, on the
Spend page, through the period picker; a team's row opens the team's keys for the same month."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from billing.recompute import refresh_allocations
from tests.billing.conftest import ingest, record
from usage.models import Account
from usage.periods import dashboard_tz
from usage.services import create_account

# (team, key, usage value per request): each team's traffic in the month before last and last month.
TRAFFIC = {
    "search": ("search-api", Decimal("0.40"), 5, 8),  # grows: 5 requests, then 8
    "support": ("support-bot", Decimal("0.25"), 10, 6),  # shrinks: 10, then 6
}


def month_starts() -> tuple[datetime, datetime]:
    """The first moment of last month and of the month before it, in the dashboard's zone."""
    today = timezone.localdate(timezone=dashboard_tz())
    last = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    before = (last - timedelta(days=1)).replace(day=1)
    return (
        datetime.combine(last, time(9), tzinfo=dashboard_tz()),
        datetime.combine(before, time(9), tzinfo=dashboard_tz()),
    )


@pytest.fixture
def teams_account(transactional_db) -> Account:
    account = create_account(name="Acme Research", slug="acme", currency="USD")
    last, before = month_starts()
    bodies = []
    for team, (key, value, earlier, later) in TRAFFIC.items():
        for start, count in ((before, earlier), (last, later)):
            for n in range(count):
                bodies.append(
                    record(
                        f"{team}-{start:%m}-{n}",
                        start + timedelta(days=n % 20, minutes=n),
                        "gpt-4o",
                        1_000,
                        200,
                        str(value),
                        api_key=f"name:{key}",
                        metadata={"team": team},
                    )
                )
    ingest(account, *bodies)
    refresh_allocations(account, now=timezone.now())  # what the worker does seconds later: paid follows
    return account


def change_text(before: Decimal, after: Decimal) -> str:
    points = (after - before) / before * 100
    shown = points.quantize(Decimal("0.1") if abs(points) < 100 else Decimal("1"), ROUND_HALF_UP)
    return f"{'+' if shown > 0 else ''}{shown}%"


def test_finance_reads_team_spend_for_last_month_and_its_change(teams_account: Account, browsing, log_in, screenshot):
    page = log_in(browsing.open())
    page.get_by_role("link", name="Spend").click()
    page.locator("#period-last_month").click()
    page.wait_for_url("**/spend/?period=last_month")

    expect(page.locator("#period-comparison")).to_contain_text("compared with")
    totals = defaultdict(Decimal)
    for team, (_, value, earlier, later) in TRAFFIC.items():
        row = page.locator(f'#spend-team-table tr[data-team="{team}"]')
        expect(row.locator("th")).to_have_text(team)
        expect(row.locator("td").nth(1)).to_have_text(f"{value * later:,.2f}")
        expect(row.locator('[data-change="usage-value"]')).to_have_text(change_text(value * earlier, value * later))
        # No plan: the wallet paid each request at its usage value, so paid moved the same way.
        expect(row.locator("td").nth(3)).to_have_text(f"{value * later:,.2f}")
        expect(row.locator('[data-change="paid"]')).to_have_text(change_text(value * earlier, value * later))
        totals["before"] += value * earlier
        totals["after"] += value * later
    expect(page.locator("#spend-usage-value")).to_have_text(f"{totals['after']:,.2f}")
    screenshot(page, "spend-last-month", full_page=True)

    page.locator('#spend-team-table tr[data-team="search"] th a').click()  # the team's keys, same month
    page.wait_for_url("**team=search**")
    assert "period=last_month" in page.url
    expect(page.locator("#spend-filters")).to_contain_text("search")
    expect(page.locator("#spend-key-table tbody tr")).to_have_count(1)
    expect(page.locator('#spend-key-table tr[data-key="search-api"]')).to_be_visible()
    assert browsing.problems(page) == []
