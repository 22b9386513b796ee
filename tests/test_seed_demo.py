"""The demo data set: deterministic, idempotent, realistic enough to show every page's features."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import StringIO
from statistics import mean

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db.models import Sum
from django.test import Client

from toki_dashboard.roles import Role, roles_of
from usage import demo, rollups
from usage.models import (
    Account,
    ApiKey,
    ErrorCause,
    HourlyUsage,
    ModelPrice,
    PriceSource,
    Team,
    TokensSource,
    UsageRecord,
)
from usage.pricing.repricing import Scope
from usage.schemas import RecordIn
from usage.services import record_usage

ANCHOR = datetime(2025, 3, 12, 18, tzinfo=UTC)  # a Wednesday evening
DAYS = 1
STORED_FIELDS = [
    f.name
    for f in UsageRecord._meta.concrete_fields
    if f.name not in ("id", "account", "api_key", "price", "created_at")
]


def seed(*, until: datetime = ANCHOR, days: int = DAYS, seed: int = 1) -> demo.DemoReport:
    return demo.seed_demo_usage(days=days, seed=seed, until=until)


def digest(rows: object) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def stored_digest(account: Account) -> str:
    rows = (
        UsageRecord.objects.filter(account=account)
        .order_by("request_id")
        .values_list(*STORED_FIELDS, "api_key__name", "price__model_pattern")
    )
    return digest(list(rows))


def totals(account: Account) -> dict[str, object]:
    sums = HourlyUsage.objects.filter(account=account).aggregate(
        *(Sum(c) for c in ("requests", "errors", "prompt_tokens", "completion_tokens", "cost"))
    )
    return {
        "records": UsageRecord.objects.filter(account=account).count(),
        "groups": HourlyUsage.objects.filter(account=account).count(),
        "keys": ApiKey.objects.filter(account=account).count(),
        "prices": ModelPrice.objects.count(),
        "users": User.objects.count(),
        **sums,
    }


def generated(*, until: datetime = ANCHOR, days: int = DAYS, seed: int = 1) -> list[dict]:
    return list(demo.records_in_window(demo.DemoWindow.ending(until, days=days, seed=seed)))


def test_same_seed_and_anchor_store_identical_records(db):
    first = seed()
    before = stored_digest(first.account)
    Account.objects.filter(pk=first.account.pk).delete()  # records, keys and rollups go with it

    second = seed()

    assert second.account.pk != first.account.pk
    assert second.ingested.accepted == first.ingested.accepted > 1000
    assert stored_digest(second.account) == before


def test_different_seeds_generate_different_records():
    assert digest(generated(seed=1)) != digest(generated(seed=2))
    assert digest(generated(seed=1)) == digest(generated(seed=1))


def test_running_twice_changes_nothing(db):
    first = seed()
    before = totals(first.account)

    again = seed()

    assert (again.ingested.accepted, again.ingested.duplicates, again.ingested.conflicts) == (0, 0, [])
    assert (again.hours_generated, again.hours_skipped) == (0, DAYS * 24)
    assert (again.users_created, again.prices_created) == (0, 0)
    assert totals(again.account) == before


def test_replaying_the_generated_records_gives_duplicates_not_conflicts(db):
    account = seed().account
    records = [(i, RecordIn.model_validate(p)) for i, p in enumerate(generated())]

    result = record_usage(account, records, source="demo")

    assert (result.accepted, result.duplicates, result.conflicts) == (0, len(records), [])


def test_a_later_run_adds_only_the_hours_since_the_last_one(db):
    account = seed().account
    count_before = UsageRecord.objects.filter(account=account).count()
    later = ANCHOR + timedelta(hours=3)

    report = seed(until=later)

    added = UsageRecord.objects.filter(account=account).exclude(occurred_at__lt=ANCHOR)
    assert (report.hours_generated, report.hours_skipped) == (3, DAYS * 24 - 3)
    assert report.ingested.accepted == added.count() > 0
    assert UsageRecord.objects.filter(account=account).count() == count_before + added.count()
    assert all(ANCHOR <= at < later for at in added.values_list("occurred_at", flat=True))
    assert rollups.verify(account) == []


def test_seeded_rollups_equal_a_recount(db):
    account = seed().account

    assert rollups.verify(account) == []
    requests = HourlyUsage.objects.filter(account=account).aggregate(n=Sum("requests"))["n"]
    assert requests == UsageRecord.objects.filter(account=account).count()


def test_demo_users_log_in_with_the_demo_password_and_hold_their_roles(db):
    seed(days=1)

    for role in Role:
        assert Client().login(username=role.value, password="toki-demo"), role
    assert roles_of(User.objects.get(username="finance")) == {Role.FINANCE}
    assert roles_of(User.objects.get(username="engineer")) == {Role.ENGINEER}
    admin = User.objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert roles_of(admin) == set(Role)


def test_a_changed_demo_password_is_left_alone(db):
    seed(days=1)
    finance = User.objects.get(username="finance")
    finance.set_password("changed-by-finance")
    finance.save()

    seed(days=1)

    assert Client().login(username="finance", password="changed-by-finance")


def test_data_has_estimates_several_error_causes_an_unpriced_model_and_teams(db):
    account = seed().account
    records = UsageRecord.objects.filter(account=account)

    estimated = records.filter(tokens_source=TokensSource.ESTIMATED)
    assert estimated.filter(stream=True, error_cause=ErrorCause.NONE).exists()
    assert not estimated.filter(estimator_version="").exists()
    causes = set(records.exclude(error_cause=ErrorCause.NONE).values_list("error_cause", flat=True))
    assert {
        ErrorCause.RATE_LIMITED,
        ErrorCause.INSUFFICIENT_QUOTA,
        ErrorCause.MODEL_UNAVAILABLE,
        ErrorCause.UPSTREAM_ERROR,
        ErrorCause.KEY_DISABLED,
        ErrorCause.INVALID_API_KEY,
    } <= causes
    unpriced = set(records.filter(cost__isnull=True).values_list("model", flat=True))
    assert unpriced == {"doubao-1.5-pro-32k"}
    assert records.filter(cached_tokens__gt=0).exists()
    assert records.filter(model="deepseek-reasoner", reasoning_tokens__gt=0).exists()
    assert not records.exclude(model="deepseek-reasoner").filter(reasoning_tokens__gt=0).exists()
    teams = {"search", "support-bot", "data-platform", "growth"}
    assert set(records.values_list("team", flat=True)) == teams
    keys = ApiKey.objects.filter(account=account)
    assert keys.count() == len(demo.KEYS)
    assert {k.name: k.team for k in keys} == {k.name: k.team for k in demo.KEYS}
    # The Teams page lists them as teams made there, not as names first seen in usage.
    assert set(Team.objects.filter(account=account, first_seen_in_usage=False).values_list("name", flat=True)) == teams


def test_prices_are_shared_manual_rows_that_start_before_the_data(db):
    report = seed()

    prices = ModelPrice.objects.filter(account=None, source=PriceSource.MANUAL)
    assert set(prices.values_list("model_pattern", flat=True)) == {m.name for m in demo.MODELS.values() if m.price}
    assert all(p.effective_from < report.window.start for p in prices)
    assert len({(p.input_per_mtok, p.output_per_mtok) for p in prices}) == prices.count()
    assert not UsageRecord.objects.filter(account=report.account, model="gpt-4o", cost__isnull=True).exists()


@pytest.fixture
def scheduled_repricing(monkeypatch) -> list[list[Scope]]:
    scheduled: list[list[Scope]] = []
    monkeypatch.setattr("usage.demo.writing.schedule", lambda scopes: scheduled.append(list(scopes)))
    return scheduled


def test_demo_prices_on_an_empty_database_schedule_no_repricing(db, scheduled_repricing):
    created = demo.ensure_prices()

    assert created == sum(1 for m in demo.MODELS.values() if m.price)
    assert scheduled_repricing == []


def test_demo_prices_reprice_records_that_arrived_before_them(db, scheduled_repricing):
    imported = {"request_id": "r1", "occurred_at": ANCHOR, "model": "gpt-4o", "usage": {"prompt_tokens": 10}}
    record_usage(demo.ensure_account(), [(0, RecordIn.model_validate(imported))], source="import")

    demo.ensure_prices()

    assert len(scheduled_repricing) == 1
    assert "gpt-4o" in {scope.model_pattern for scope in scheduled_repricing[0]}


def test_records_stay_inside_the_window_and_profiles_sum_to_their_lengths():
    window = demo.DemoWindow.ending(ANCHOR, days=DAYS, seed=1)
    records = list(demo.records_in_window(window))

    assert all(window.start <= r["occurred_at"] < window.until for r in records)
    assert len({r["request_id"] for r in records}) == len(records)
    for r in records:
        for side in ("context", "output"):
            if f"{side}_profile" in r:
                profile = r[f"{side}_profile"]
                assert sum(profile.values()) == r[f"{side}_chars"]
                assert min(profile.values()) >= 0
                assert r[f"{side}_bytes"] >= r[f"{side}_chars"]


def test_working_hours_are_busiest_and_weekends_quieter():
    week = generated(until=datetime(2025, 3, 17, tzinfo=UTC), days=7)  # Monday to Sunday
    per_hour = Counter(r["occurred_at"].replace(minute=0, second=0, microsecond=0) for r in week)
    weekday_office = [n for h, n in per_hour.items() if h.weekday() < 5 and 10 <= h.hour < 16]
    weekday_late = [n for h, n in per_hour.items() if h.weekday() < 5 and h.hour >= 22]
    assert mean(weekday_office) > 2 * mean(weekday_late)
    per_day = Counter(r["occurred_at"].weekday() for r in week)
    weekend_share = (per_day[5] + per_day[6]) / 2 / (sum(per_day[d] for d in range(5)) / 5)
    assert 0.3 < weekend_share < 0.55


def test_latency_grows_with_the_answer():
    records = [r for r in generated() if "usage" in r and r["endpoint"] == "/v1/chat/completions"]
    records = [r for r in records if r["model"] == "gpt-4o-mini"]
    short = [r["latency_ms"] for r in records if r["usage"]["completion_tokens"] < 50]
    long = [r["latency_ms"] for r in records if r["usage"]["completion_tokens"] > 400]
    assert sorted(short)[len(short) // 2] < sorted(long)[len(long) // 2]


def test_command_prints_a_summary_and_no_secret(db, monkeypatch):
    monkeypatch.setattr("usage.demo.writing.current_hour", lambda: ANCHOR)
    out = StringIO()

    call_command("seed_demo", "--days", "1", "--seed", "7", stdout=out)

    text = out.getvalue()
    added = UsageRecord.objects.filter(request_id__startswith="demo-7-").count()
    assert f"{added:,} records added" in text
    assert "toki-demo" not in text
    assert "password" not in text.lower()


@pytest.mark.parametrize("days", ["0", "366", "-3"])
def test_command_refuses_days_outside_1_to_365(db, days):
    with pytest.raises(CommandError, match="between 1 and 365"):
        call_command("seed_demo", "--days", days)
    assert not UsageRecord.objects.exists()


def test_demo_data_cannot_end_in_the_future(db):
    with pytest.raises(ValueError, match="future"):
        seed(until=datetime.now(UTC) + timedelta(hours=2))
    assert not UsageRecord.objects.exists()
