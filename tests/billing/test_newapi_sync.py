"""Syncing a New API console (README "Billing and provider sync") against the local fake console."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import sync
from billing.models import Allocation, BalanceSnapshot, SyncOutcome, SyncState
from billing.providers.newapi_console import console_root
from tests.billing.fake_console import LogRow
from usage.models import ApiKey, UsageRecord

pytestmark = pytest.mark.usefixtures("newapi_account")


def now_ts() -> int:
    return int(timezone.now().timestamp())


def consume(created_at: int, model: str = "gpt-4o", prompt: int = 1000, completion: int = 200, **kw) -> LogRow:
    return LogRow(created_at=created_at, model_name=model, prompt_tokens=prompt, completion_tokens=completion,
                  quota=(prompt + 4 * completion) * 3, **kw)  # fmt: skip


def test_console_root_drops_the_api_version():
    assert console_root("https://toki.example/v1/") == "https://toki.example"
    assert console_root("https://toki.example") == "https://toki.example"


def test_a_sync_stores_the_balance_and_ingests_the_logs_through_the_ingestion_service(newapi_account, console):
    t = now_ts() - 3600
    console.add_logs(
        consume(t, request_id="req-own-id", other={"cache_tokens": 400, "frt": 850.0, "model_ratio": 2.5}),
        consume(t + 60, "deepseek-chat", token_name="etl-enrichment", use_time=7, is_stream=True),
        LogRow(created_at=t + 120, type=5, model_name="gpt-4o", prompt_tokens=0, completion_tokens=0, quota=0,
               content="upstream error: bad gateway", other={"status_code": 502, "error_type": "upstream_error"}),
        LogRow(created_at=t + 180, type=1, model_name="", prompt_tokens=0, completion_tokens=0, quota=500_000,
               content="top-up"),
    )  # fmt: skip

    run = sync.sync_account(newapi_account)

    assert run.outcome == SyncOutcome.SUCCESS, run.error
    assert (run.rows_read, run.records_ingested, run.duplicates) == (3, 3, 0)
    records = {r.request_id: r for r in UsageRecord.objects.filter(account=newapi_account)}
    assert {r.source for r in records.values()} == {"sync"}
    own = records["req-own-id"]
    assert (own.prompt_tokens, own.completion_tokens, own.cached_tokens, own.ttft_ms) == (1000, 200, 400, 850)
    assert own.metadata["newapi_quota"] == str((1000 + 800) * 3)
    derived = [r for rid, r in records.items() if rid.startswith("newapi-")]
    assert sorted((r.model, r.status_code, r.error_cause) for r in derived) == [
        ("deepseek-chat", 200, "none"),
        ("gpt-4o", 502, "upstream_error"),
    ]
    snapshot = BalanceSnapshot.objects.get(account=newapi_account)
    assert (snapshot.balance, snapshot.currency, snapshot.used, snapshot.request_count) == (
        Decimal("50"), "USD", Decimal("10"), 1200
    )  # fmt: skip
    assert snapshot.source == "newapi_console" and snapshot.sync_run_id == run.pk
    assert "access_token" not in str(snapshot.raw)
    # Allocated right away, so the balance and reconciliation include them.
    assert Allocation.objects.filter(account=newapi_account).count() == 3


def test_the_first_read_looks_back_then_each_sync_starts_from_the_cursor(newapi_account, console, settings):
    console.add_logs(consume(now_ts() - 100))
    before = now_ts()

    first = sync.sync_account(newapi_account)
    second = sync.sync_account(newapi_account)

    reads = console.requests_to("/api/log/self")
    consume_reads = [q for q in reads if q["type"] == "2"]
    lookback = settings.BILLING_SYNC_INITIAL_LOOKBACK_DAYS * 86400
    assert abs(int(consume_reads[0]["start_timestamp"]) - (before - lookback)) <= 2
    end = int(consume_reads[0]["end_timestamp"])
    assert first.cursor_after == end - sync.OVERLAP_SECONDS
    assert int(consume_reads[1]["start_timestamp"]) == first.cursor_after
    # The row inside the overlap is read again and recognised.
    assert (second.records_ingested, second.duplicates) == (0, 1)
    assert UsageRecord.objects.filter(account=newapi_account).count() == 1


def test_rows_without_request_id_are_recognised_although_their_id_changes(newapi_account, console):
    console.add_logs(*(consume(now_ts() - 500 - i, prompt=100 + i) for i in range(5)))
    sync.sync_account(newapi_account)
    SyncState.objects.filter(account=newapi_account).update(cursor=None)  # read everything again

    again = sync.sync_account(newapi_account)

    assert (again.records_ingested, again.duplicates) == (0, 5)
    assert UsageRecord.objects.filter(account=newapi_account).count() == 5


def test_rows_arriving_between_pages_are_neither_lost_nor_counted_twice(newapi_account, console):
    start = now_ts() - 290
    console.add_logs(*(consume(start + i, prompt=100 + i) for i in range(250)))
    newest = start + 249
    window_end: list[int] = []

    def meanwhile(page: int) -> None:
        if page == 1 and not window_end:
            window_end.append(int(console.requests_to("/api/log/self")[-1]["end_timestamp"]))
            console.state.logs.append(consume(window_end[0] + 1, prompt=7001))  # after the window
            console.state.logs.append(consume(newest - 1, prompt=7002))  # inside it, among rows already read

    console.state.between_pages = meanwhile
    first = sync.sync_account(newapi_account)
    console.state.between_pages = None

    assert first.outcome == SyncOutcome.SUCCESS
    assert len([q for q in console.requests_to("/api/log/self") if q["type"] == "2"]) == 3
    # The late row pushed the rest down by one: one row was read twice and stored once.
    assert (first.records_ingested, first.duplicates) == (250, 1)
    while now_ts() <= window_end[0] + 1:  # the next sync's window must reach the new row
        time.sleep(0.05)

    second = sync.sync_account(newapi_account)

    assert second.records_ingested == 2  # the late row, within the overlap, and the new one
    prompts = sorted(UsageRecord.objects.filter(account=newapi_account).values_list("prompt_tokens", flat=True))
    assert prompts == sorted([100 + i for i in range(250)] + [7001, 7002])


def test_a_console_that_ignores_the_window_end_shifts_its_pages_and_nothing_is_counted_twice(newapi_account, console):
    start = now_ts() - 3600
    console.add_logs(*(consume(start + 10 * i, prompt=100 + i) for i in range(180)))
    console.state.ignore_end_timestamp = True
    extra = iter(range(3))

    def meanwhile(page: int) -> None:
        for _ in range(2):  # two new rows on top before every next page
            if (n := next(extra, None)) is not None:
                console.state.logs.append(consume(now_ts() + 1, prompt=9000 + n))

    console.state.between_pages = meanwhile
    run = sync.sync_account(newapi_account)

    assert run.outcome == SyncOutcome.SUCCESS
    assert run.duplicates >= 2
    stored = list(UsageRecord.objects.filter(account=newapi_account).values_list("prompt_tokens", flat=True))
    assert len(stored) == len(set(stored))
    assert set(range(100, 280)) <= set(stored)


def test_key_statuses_from_the_console_are_kept_on_the_keys(newapi_account, console):
    console.add_logs(consume(now_ts() - 60, token_name="growth-seo"), consume(now_ts() - 50, token_name="search-prod"))
    console.state.keys = [
        {"id": 1, "name": "growth-seo", "status": 2, "remain_quota": 0, "used_quota": 10, "unlimited_quota": False,
         "expired_time": -1, "model_limits": ""},
        {"id": 2, "name": "search-prod", "status": 1, "remain_quota": 5, "used_quota": 10, "unlimited_quota": True,
         "expired_time": -1, "model_limits": ""},
    ]  # fmt: skip

    sync.sync_account(newapi_account)

    statuses = dict(ApiKey.objects.filter(account=newapi_account).values_list("name", "provider_status"))
    assert statuses == {"growth-seo": "disabled", "search-prod": "enabled"}


def test_a_cny_account_gets_the_balance_in_yuan_at_the_consoles_rate(newapi_account, console):
    newapi_account.currency = "CNY"
    newapi_account.save()
    console.state.usd_exchange_rate = 7.25
    console.state.quota = 1_000_000  # $2

    sync.sync_account(newapi_account)

    snapshot = BalanceSnapshot.objects.get()
    assert (snapshot.balance, snapshot.currency) == (Decimal("14.5"), "CNY")


def test_the_console_is_sent_the_token_and_the_user_id(newapi_account, console):
    sync.sync_account(newapi_account)

    authenticated = [h for h in console.headers_sent() if "New-Api-User" in h]
    assert authenticated
    assert all(h["New-Api-User"] == "4242" for h in authenticated)
    assert all(h["Authorization"].endswith("console-access-token-0123456789abcdef") for h in authenticated)


def test_sync_times_are_aware_utc(newapi_account):
    run = sync.sync_account(newapi_account)

    assert run.started_at.tzinfo is not None
    assert run.started_at.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - run.finished_at < timedelta(minutes=1)
