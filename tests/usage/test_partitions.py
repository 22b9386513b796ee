"""Monthly partitions of the usage records (PostgreSQL), the registry of request ids that keeps
idempotency exact across them, and raw-record retention that leaves every total exact."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from usage import partitions, rollups
from usage.models import (
    ApiKey,
    DailyUsage,
    HourlyUsage,
    LatencyHistogram,
    ModelPrice,
    RawRetention,
    RegisteredRequest,
    UsageRecord,
)
from usage.schemas import RecordIn, validate_records
from usage.services import create_account, record_usage

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="monthly partitions exist on PostgreSQL only: SQLite keeps the usage records in one table",
)


def raw(request_id: str, at: datetime, prompt: int = 100, model: str = "gpt-4o") -> dict:
    return {
        "request_id": request_id,
        "occurred_at": at.isoformat(),
        "model": model,
        "usage": {"prompt_tokens": prompt, "completion_tokens": prompt // 10},
        "cost": str(Decimal(prompt) / 1000),
        "latency_ms": 100 + prompt % 50,
    }


def ingest(account, records: list[dict]):
    valid, rejected = validate_records(records)
    assert not rejected
    return record_usage(account, valid, source="api")


def partition_of(record_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM usage_usagerecord WHERE id = %s", [record_id])
        return cursor.fetchone()[0]


def totals() -> dict[str, object]:
    figures = ("requests", "prompt_tokens", "completion_tokens", "cost", "latency_ms_sum")
    return {
        f"{model.__name__}.{name}": value
        for model in (HourlyUsage, DailyUsage)
        for name, value in model.objects.aggregate(**{n: Sum(n) for n in figures}).items()
    }


# --- Partitions --------------------------------------------------------------------------------


@postgres_only
def test_the_migration_partitions_the_records_by_month_with_a_default(db):
    found = partitions.partitions()
    current = partitions.month_start(datetime.now(UTC))
    months = [p.start for p in found if p.start is not None]

    assert partitions.is_partitioned()
    for ahead in range(4):  # this month and three ahead
        assert partitions.add_months(current, ahead) in months
    assert found[-1].name == partitions.DEFAULT_PARTITION and found[-1].start is None
    assert all(p.end == partitions.add_months(p.start, 1) for p in found if p.start is not None)


@postgres_only
def test_partitions_are_created_ahead_and_a_month_held_by_the_default_moves_into_its_own(db, account):
    far = datetime(2021, 6, 15, 12, tzinfo=UTC)
    ingest(account, [raw("far-1", far), raw("far-2", far + timedelta(days=3))])
    first = UsageRecord.objects.get(request_id="far-1")
    assert partition_of(first.pk) == partitions.DEFAULT_PARTITION

    created = partitions.ensure_partitions(ahead=2, now=datetime(2021, 4, 20, tzinfo=UTC))

    assert created == ["usage_usagerecord_p2021_04", "usage_usagerecord_p2021_05", "usage_usagerecord_p2021_06"]
    assert partition_of(first.pk) == "usage_usagerecord_p2021_06"
    assert UsageRecord.objects.filter(account=account).count() == 2
    assert partitions.ensure_partitions(ahead=2, now=datetime(2021, 4, 20, tzinfo=UTC)) == []
    # New records of that month go to the new partition, through the parent table.
    ingest(account, [raw("far-3", far + timedelta(days=1))])
    assert partition_of(UsageRecord.objects.get(request_id="far-3").pk) == "usage_usagerecord_p2021_06"


@postgres_only
def test_the_scheduled_task_creates_the_partitions_ahead(db, settings):
    from usage.tasks import maintain_usage_partitions

    settings.RAW_RETENTION_MONTHS = None
    settings.USAGE_PARTITIONS_AHEAD = 7
    current = partitions.month_start(datetime.now(UTC))

    done = maintain_usage_partitions.apply().get()

    months = {p.start for p in partitions.partitions()}
    assert all(partitions.add_months(current, n) in months for n in range(8))
    assert partitions.partition_name(partitions.add_months(current, 7)) in done["created"]
    assert done["dropped"] == []


# --- Idempotency through the registry ----------------------------------------------------------


def test_the_same_request_id_in_two_months_is_a_conflict_not_a_second_record(db, account):
    boundary = datetime(2026, 12, 1, tzinfo=UTC)
    first = ingest(account, [raw("edge", boundary - timedelta(seconds=1))])
    again = ingest(account, [raw("edge", boundary + timedelta(seconds=1))])
    replay = ingest(account, [raw("edge", boundary - timedelta(seconds=1))])

    assert (first.accepted, again.accepted, replay.accepted) == (1, 0, 0)
    assert again.conflicts == [{"index": 0, "request_id": "edge"}]
    assert (replay.duplicates, replay.conflicts) == (1, [])
    assert UsageRecord.objects.filter(account=account, request_id="edge").count() == 1
    assert UsageRecord.objects.get(request_id="edge").occurred_at == boundary - timedelta(seconds=1)
    assert RegisteredRequest.objects.filter(account=account, request_id="edge").count() == 1
    assert rollups.verify(account) == []


def test_concurrent_replays_spanning_two_months_store_each_request_once(transactional_db, account):
    boundary = datetime(2026, 12, 1, tzinfo=UTC)
    rng = random.Random(5)
    # 600 requests a minute apart around the month boundary; the same id may come with a
    # moment in the other month (a conflict, never a second record).
    records = [raw(f"r{i}", boundary + timedelta(minutes=i - 300), prompt=100 + i) for i in range(600)]
    shifted = [dict(r, occurred_at=(boundary + timedelta(minutes=300 - i)).isoformat()) for i, r in enumerate(records)]
    batches = [rng.sample(records, 300) for _ in range(6)] + [rng.sample(shifted, 200) for _ in range(2)]
    rng.shuffle(batches)

    def send(batch: list[dict]) -> None:
        try:
            ingest(account, batch)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(send, batches))

    ids = list(UsageRecord.objects.filter(account=account).values_list("request_id", flat=True))
    assert len(ids) == len(set(ids)), "a request id stored twice"
    assert set(ids) == set(RegisteredRequest.objects.filter(account=account).values_list("request_id", flat=True))
    assert rollups.verify(account) == []
    assert sum(g["requests"] for g in rollups.stored(account).values()) == len(ids)


# --- Retention ---------------------------------------------------------------------------------


def seven_months(account, now: datetime) -> None:
    """Records in each of the seven months up to `now`'s, two days apart, in batches."""
    start = partitions.add_months(partitions.month_start(now), -6)
    records, at, i = [], start + timedelta(hours=5), 0
    while at < now:
        records.append(raw(f"m{i}", at, prompt=50 + i % 97, model=("gpt-4o", "deepseek-chat")[i % 2]))
        at, i = at + timedelta(days=2, minutes=7), i + 1
    ingest(account, records)
    partitions.ensure_partitions(ahead=0, now=now)  # months held by the default get their own


@postgres_only
def test_retention_drops_each_old_month_partition_in_one_statement_and_keeps_the_rollups(db, account):
    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    before = totals()
    cutoff = datetime(2020, 6, 1, tzinfo=UTC)  # three months before September
    old = UsageRecord.objects.filter(account=account, occurred_at__lt=cutoff).count()
    kept = UsageRecord.objects.filter(account=account, occurred_at__gte=cutoff).count()
    assert old and kept

    with CaptureQueriesContext(connection) as queries:
        done = partitions.apply_retention(now=now, months=3)

    drops = [q["sql"] for q in queries if q["sql"].startswith("DROP TABLE")]
    assert done.dropped == [f"usage_usagerecord_p2020_{m:02d}" for m in (3, 4, 5)]
    assert len(drops) == 3 and all(name in " ".join(drops) for name in done.dropped)
    assert done.kept_from == cutoff == RawRetention.kept_from_now()
    assert UsageRecord.objects.filter(account=account).count() == kept
    assert not UsageRecord.objects.filter(occurred_at__lt=cutoff).exists()
    assert totals() == before
    # The request ids of the dropped records stay: a replay is still a duplicate.
    assert RegisteredRequest.objects.filter(account=account).count() == old + kept


def test_retention_forgets_raw_records_only_and_a_replay_of_a_forgotten_one_counts_nothing(db, account, settings):
    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    before = totals()
    cutoff = datetime(2020, 6, 1, tzinfo=UTC)
    forgotten = UsageRecord.objects.filter(account=account, occurred_at__lt=cutoff).order_by("occurred_at").first()
    kept = UsageRecord.objects.filter(account=account, occurred_at__gte=cutoff).count()

    partitions.apply_retention(now=now, months=3)

    assert UsageRecord.objects.filter(account=account).count() == kept
    assert totals() == before
    again = raw(forgotten.request_id, forgotten.occurred_at, prompt=forgotten.prompt_tokens, model=forgotten.model)
    replay = ingest(account, [again])
    assert (replay.accepted, len(replay.conflicts)) == (0, 0) and replay.duplicates == 1
    assert totals() == before


def test_rebuild_rollups_after_retention_leaves_the_summarised_months_and_recounts_the_kept_ones(db, account):
    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    before = totals()
    partitions.apply_retention(now=now, months=3)

    assert rollups.verify(account) == []
    rollups.rebuild(account)

    assert totals() == before
    assert HourlyUsage.objects.filter(account=account, hour__lt=datetime(2020, 6, 1, tzinfo=UTC)).exists()
    assert rollups.verify(account) == []


def billing_figures(account) -> dict[str, object]:
    from billing.models import Allocation, DailyPaid, WalletEntry

    figures = ("requests", "plan_tokens", "plan_paid", "wallet_paid", "unknown_requests")
    return {
        "allocations": Allocation.objects.filter(account=account).aggregate(
            rows=Count("id"), tokens=Sum("tokens"), amount=Sum("amount")
        ),
        "paid": DailyPaid.objects.filter(account=account).aggregate(**{n: Sum(n) for n in figures}),
        "paid_days": sorted(DailyPaid.objects.filter(account=account).values_list("day", "model", "requests")),
        "wallet": WalletEntry.objects.filter(account=account).aggregate(n=Count("id"), amount=Sum("amount")),
    }


def test_allocations_paid_and_the_wallet_stay_exact_when_old_months_are_dropped(db, account):
    from billing import paid
    from billing.recompute import refresh_allocations, request_recompute
    from tests.billing.conftest import buy

    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    # A plan covers part of the usage; the rest is charged to the wallet.
    buy(account, "spring", 3000, datetime(2020, 3, 1, tzinfo=UTC), datetime(2020, 7, 1, tzinfo=UTC), price="12")
    refresh_allocations(account, now=now)
    before = billing_figures(account)
    assert before["wallet"]["n"] and before["paid"]["plan_tokens"]

    partitions.apply_retention(now=now, months=3)
    refresh_allocations(account, now=now, full=True)
    request_recompute(account, datetime(2020, 3, 1, tzinfo=UTC), "a purchase changed back then")
    refresh_allocations(account, now=now)
    paid.rebuild(account)

    assert billing_figures(account) == before


def test_pages_csv_and_the_records_api_say_when_a_period_is_summarised_only(db, account, engineer_client, settings):
    settings.RAW_RETENTION_MONTHS = 3
    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    partitions.apply_retention(now=now, months=3)
    old = {"period": "custom", "start": "2020-03-01", "end": "2020-03-31"}
    recent = {"period": "custom", "start": "2020-07-01", "end": "2020-07-31"}
    said = "Request-level detail kept for 3 months (from 2020-06-01); this period is summarised only"

    for url in ("/requests/", "/errors/", "/models/", "/models/gpt-4o/"):
        assert said in engineer_client.get(url, old).content.decode(), url
        assert "summarised only" not in engineer_client.get(url, recent).content.decode(), url
    lines = b"".join(engineer_client.get("/requests/export.csv", old).streaming_content).decode().splitlines()
    assert len(lines) == 2 and lines[-1].startswith(f"# {said}")
    kept = b"".join(engineer_client.get("/requests/export.csv", recent).streaming_content).decode()
    assert "summarised" not in kept and len(kept.splitlines()) > 2
    api = engineer_client.get("/api/v1/usage/records", {"start": "2020-03-01", "end": "2020-03-31"}).json()
    assert api["records"] == [] and api["retention_notice"].startswith(said)
    api = engineer_client.get("/api/v1/usage/records", {"start": "2020-07-01", "end": "2020-07-31"}).json()
    assert api["records"] and api["retention_notice"] is None


def test_the_summarised_only_notice_is_in_the_readers_language_on_pages_and_english_for_scripts(
    db, account, engineer_client, settings
):
    settings.RAW_RETENTION_MONTHS = 3
    now = datetime(2020, 9, 14, tzinfo=UTC)
    seven_months(account, now)
    partitions.apply_retention(now=now, months=3)
    old = {"period": "custom", "start": "2020-03-01", "end": "2020-03-31"}
    chinese = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
    said = "Request-level detail kept for 3 months (from 2020-06-01); this period is summarised only"

    page = engineer_client.get("/requests/", old, **chinese).content.decode()
    assert "请求级明细保留 3 个月（自 2020-06-01 起）；本期仅有汇总数据" in page and said not in page
    # The CSV and the API are read by scripts: English, as their column and field names.
    csv_lines = b"".join(engineer_client.get("/requests/export.csv", old, **chinese).streaming_content)
    assert csv_lines.decode().splitlines()[-1].startswith(f"# {said}")
    api = engineer_client.get("/api/v1/usage/records", {"start": "2020-03-01", "end": "2020-03-31"}, **chinese)
    assert api.json()["retention_notice"].startswith(said)


def test_the_maintenance_command_says_what_it_kept_dropped_and_created(db, account, settings):
    from io import StringIO

    from django.core.management import call_command

    settings.RAW_RETENTION_MONTHS = None
    out = StringIO()
    call_command("maintain_usage_records", stdout=out)
    assert "RAW_RETENTION_MONTHS is not set, every raw record is kept" in out.getvalue()

    settings.RAW_RETENTION_MONTHS = 2
    ingest(account, [raw("old", datetime(2020, 1, 5, tzinfo=UTC)), raw("new", datetime.now(UTC) - timedelta(hours=1))])
    out = StringIO()
    call_command("maintain_usage_records", stdout=out)

    cutoff = partitions.retention_cutoff(months=2)
    assert f"raw records kept from {cutoff:%Y-%m-%d}" in out.getvalue()
    assert list(UsageRecord.objects.values_list("request_id", flat=True)) == ["new"]
    if connection.vendor == "postgresql":
        assert "Partitions: 0 created (all there already)" in out.getvalue()
    else:
        assert "one table on this database (SQLite)" in out.getvalue()


def test_every_index_of_the_records_is_there_after_the_migrations(db):
    """The partitioning (PostgreSQL) and the table rebuilds (SQLite) keep the indexes the
    migrations made in raw SQL, and the single-column account index and the latency index
    (the latency histogram answers the percentiles) are gone."""
    with connection.cursor() as cursor:
        names = {
            index
            for index, info in connection.introspection.get_constraints(cursor, "usage_usagerecord").items()
            if info["index"]
        }
    for expected in ("usage_log_idx", "usage_model_time_idx", "usage_converted_idx", "usage_unsupported_idx"):
        assert expected in names
    assert "usage_failed_idx" in names  # raw SQL
    assert "usage_model_latency_idx" not in names
    assert not any(n.startswith("usage_usagerecord_account_id") for n in names)


def test_the_records_carry_no_foreign_key_check_yet_deleting_a_key_or_price_still_clears_them(db):
    """A check per row written halved the insert rate at 10M records; Django's on_delete still runs."""
    account = create_account(name="Acme", slug="acme", currency="USD")
    price = ModelPrice.objects.create(
        account=account,
        model_pattern="gpt-4o",
        input_per_mtok=Decimal("1"),
        output_per_mtok=Decimal("2"),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
    )
    record = RecordIn(
        request_id="r1",
        occurred_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
        model="gpt-4o",
        api_key="name:batch-jobs",
        usage={"prompt_tokens": 1000, "completion_tokens": 10},
    )
    record_usage(account, [(0, record)], source="api")
    stored = UsageRecord.objects.get(account=account)
    assert stored.api_key_id is not None and stored.price_id == price.pk

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "usage_usagerecord")
    assert [name for name, info in constraints.items() if info["foreign_key"]] == []

    ApiKey.objects.filter(pk=stored.api_key_id).delete()
    price.delete()

    stored.refresh_from_db()
    assert (stored.api_key_id, stored.price_id) == (None, None)
    assert UsageRecord.objects.filter(account=account).count() == 1


def test_the_rollups_and_the_registry_carry_no_constraint_check_yet_deleting_a_key_or_account_still_reaches_them(db):
    """Derived rows written with every batch (bench/README.md, "Less Python per record"); on_delete still runs."""
    account = create_account(name="Acme", slug="acme", currency="USD")
    record = RecordIn(
        request_id="r1",
        occurred_at=datetime(2026, 11, 20, 12, tzinfo=UTC),
        model="gpt-4o",
        api_key="name:batch-jobs",
        usage={"prompt_tokens": 1000, "completion_tokens": 10},
        latency_ms=800,
    )
    record_usage(account, [(0, record)], source="api")
    tables = [model._meta.db_table for model in (HourlyUsage, DailyUsage, LatencyHistogram, RegisteredRequest)]
    with connection.cursor() as cursor:
        for table in tables:
            constraints = connection.introspection.get_constraints(cursor, table)
            assert [name for name, info in constraints.items() if info["foreign_key"]] == [], table
            assert not any(info["columns"] == ["account_id"] for info in constraints.values()), table

    ApiKey.objects.filter(account=account).delete()
    assert list(HourlyUsage.objects.filter(account=account).values_list("api_key", "requests")) == [(None, 1)]
    assert list(DailyUsage.objects.filter(account=account).values_list("api_key", "requests")) == [(None, 1)]

    account.delete()
    for model in (HourlyUsage, DailyUsage, LatencyHistogram, RegisteredRequest):
        assert not model.objects.filter(account_id=account.pk).exists(), model.__name__
