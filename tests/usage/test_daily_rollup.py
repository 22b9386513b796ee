"""The daily rollup: days of DASHBOARD_TIME_ZONE, exact like the hourly one, and safe across a zone change."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.checks import run_checks
from django.test import override_settings

from usage import rollups, selectors
from usage.models import Account, DailyUsage
from usage.periods import Period
from usage.schemas import RecordIn
from usage.services import create_account, record_usage

# 18:45 UTC on the 20th is already the 21st in Kolkata (UTC+05:30): a half-hour zone,
# where UTC hours do not fall on local day boundaries.
MOMENTS = [datetime(2026, 11, 20, 18, 15, tzinfo=UTC), datetime(2026, 11, 20, 18, 45, tzinfo=UTC)]


def ingest(account: Account) -> None:
    records = [
        RecordIn(
            request_id=f"r{i}",
            occurred_at=moment,
            model="gpt-4o",
            usage={"prompt_tokens": 100, "completion_tokens": 10},
        )
        for i, moment in enumerate(MOMENTS)
    ]
    record_usage(account, list(enumerate(records)), source="api")


@override_settings(DASHBOARD_TIME_ZONE="Asia/Kolkata")
def test_records_land_on_the_local_day_they_happened_even_in_a_half_hour_zone(db):
    account = create_account(name="Acme", slug="acme", currency="USD")
    ingest(account)

    days = dict(DailyUsage.objects.filter(account=account).values_list("day", "requests"))
    assert days == {date(2026, 11, 20): 1, date(2026, 11, 21): 1}
    assert rollups.verify(account) == []


def test_after_a_time_zone_change_pages_read_the_hourly_rollup_until_a_rebuild(db):
    account = create_account(name="Acme", slug="acme", currency="USD")  # days in UTC: both on the 20th
    ingest(account)
    period = Period("custom", date(2026, 11, 21), date(2026, 11, 21))

    with override_settings(DASHBOARD_TIME_ZONE="Asia/Shanghai"):  # UTC+8: both on the 21st
        account.refresh_from_db()
        assert selectors.totals(account=account, period=period).requests == 2  # right, from the hours
        assert [m.id for m in run_checks(include_deployment_checks=False, databases=["default"])].count(
            "usage.W001"
        ) == 1

        rollups.rebuild(account)

        account.refresh_from_db()
        assert account.daily_rollup_zone == "Asia/Shanghai"
        assert selectors.rollup_rows(account, period).model is DailyUsage
        assert selectors.totals(account=account, period=period).requests == 2
        assert "usage.W001" not in [m.id for m in run_checks(databases=["default"])]
