"""Writing the demo: users, the account, prices, keys, and records through record_usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from toki_dashboard.roles import Role
from usage.demo.catalogue import ACCOUNT_NAME, ACCOUNT_SLUG, DEMO_PASSWORD, KEYS, MODELS, PRICES_EFFECTIVE_FROM
from usage.demo.traffic import DemoWindow, current_hour, records_for_hour
from usage.ingestion import name_fingerprint
from usage.models import Account, ApiKey, ModelPrice, PriceSource, Provider, RecordSource, Team, UsageRecord
from usage.pricing.repricing import Scope, schedule
from usage.schemas import RecordIn
from usage.services import IngestResult, add_member, create_account, record_usage


@dataclass
class DemoReport:
    account: Account
    window: DemoWindow
    users_created: int = 0
    prices_created: int = 0
    hours_generated: int = 0
    hours_skipped: int = 0
    ingested: IngestResult = field(default_factory=IngestResult)


def ensure_users(account: Account) -> int:
    """admin, finance and engineer in their role groups, members of the demo account; passwords
    are set only when a user is created."""
    created = 0
    for role in Role:
        is_admin = role is Role.ADMIN
        user, was_created = get_user_model().objects.get_or_create(
            username=role.value,
            defaults={"email": f"{role.value}@acme.example", "is_staff": is_admin, "is_superuser": is_admin},
        )
        if was_created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            created += 1
        add_member(account=account, user=user, role=role)
    return created


def ensure_account() -> Account:
    return Account.objects.filter(slug=ACCOUNT_SLUG).first() or create_account(
        name=ACCOUNT_NAME, slug=ACCOUNT_SLUG, currency="USD", provider=Provider.MANUAL
    )


def ensure_prices() -> int:
    """Shared manual prices for every priced demo model; returns how many were created."""
    ours = ModelPrice.objects.filter(
        account=None, currency="USD", source=PriceSource.MANUAL, effective_from=PRICES_EFFECTIVE_FROM
    )
    present = set(ours.filter(model_pattern__in=MODELS).values_list("model_pattern", flat=True))
    missing = [_price_row(m.name, m.price) for m in MODELS.values() if m.price is not None and m.name not in present]
    with transaction.atomic():
        ModelPrice.objects.bulk_create(missing)
        # bulk_create sends no post_save: reprice here, and only when records could change cost.
        if UsageRecord.objects.filter(model__in=[p.model_pattern for p in missing]).exists():
            schedule(Scope.of(p) for p in missing)
    return len(missing)


def _price_row(model: str, rates: tuple[str, str | None, str]) -> ModelPrice:
    input_rate, cached_rate, output_rate = rates
    return ModelPrice(
        account=None,
        model_pattern=model,
        input_per_mtok=Decimal(input_rate),
        cached_input_per_mtok=Decimal(cached_rate) if cached_rate is not None else None,
        output_per_mtok=Decimal(output_rate),
        currency="USD",
        effective_from=PRICES_EFFECTIVE_FROM,
        source=PriceSource.MANUAL,
    )


def ensure_teams(account: Account) -> None:
    """The demo's teams as teams made on the Teams page (before the traffic names them)."""
    Team.objects.bulk_create(
        [Team(account=account, name=name) for name in sorted({key.team for key in KEYS if key.team})],
        ignore_conflicts=True,
    )


def label_key_teams(account: Account) -> None:
    for key in KEYS:
        fingerprint = name_fingerprint(key.name)
        ApiKey.objects.filter(account=account, fingerprint=fingerprint).exclude(team=key.team).update(team=key.team)


def seeded_hours(account: Account, window: DemoWindow) -> set[datetime]:
    """Hours of the window that already hold this seed's demo records."""
    return set(
        UsageRecord.objects.filter(
            account=account,
            source=RecordSource.DEMO,
            request_id__startswith=window.request_prefix(),
            occurred_at__gte=window.start,
            occurred_at__lt=window.until,
        ).datetimes("occurred_at", "hour", tzinfo=UTC)
    )


def ingest_window(account: Account, window: DemoWindow, report: DemoReport, *, batch_size: int = 2000) -> None:
    """Send the hours not yet seeded through `record_usage`, whole hours per batch."""
    done = seeded_hours(account, window)
    batch: list[tuple[int, RecordIn]] = []
    for hour in window.hours():
        if hour in done:
            report.hours_skipped += 1
            continue
        report.hours_generated += 1
        payloads = records_for_hour(window, hour)
        batch.extend(enumerate((RecordIn.model_validate(p) for p in payloads), start=len(batch)))
        if len(batch) >= batch_size:
            report.ingested.merge(record_usage(account, batch, source=RecordSource.DEMO))
            batch = []
    if batch:
        report.ingested.merge(record_usage(account, batch, source=RecordSource.DEMO))


def seed_demo_usage(*, days: int = 30, seed: int = 1, until: datetime | None = None) -> DemoReport:
    """Users, account, prices, keys and `days` of usage ending at `until` (default: this hour)."""
    if until is not None and until > timezone.now():
        raise ValueError("the demo data cannot end in the future")
    window = DemoWindow.ending(until or current_hour(), days=days, seed=seed)
    account = ensure_account()
    report = DemoReport(
        account=account, window=window, users_created=ensure_users(account), prices_created=ensure_prices()
    )
    ensure_teams(account)
    ingest_window(account, window, report)
    label_key_teams(account)
    return report
