"""Reads of the model catalogue: its freshness, its rows with price and usage, and what it
tells other pages (models no longer listed, model filter choices, listed models without a price).

A catalogue that never synced says so: until a listing has succeeded nothing is flagged
"not listed", since the provider's list is unknown rather than empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from usage import selectors
from usage.catalogue.models import CatalogueModel, CatalogueOutcome, CatalogueSync
from usage.models import Account, ModelPrice
from usage.periods import Period
from usage.pricing.price_book import PriceBook
from usage.selectors import Totals

# The last success is stale once this many scheduled syncs have been missed.
STALE_AFTER_INTERVALS = 3
RECENT_RUNS = 8
PRICE_HISTORY = 20


class State:
    LISTED = "listed"
    REMOVED = "removed"  # listed once, missing from the last successful listing
    UNLISTED = "unlisted"  # used, never listed


@dataclass(frozen=True)
class CatalogueStatus:
    last_run: CatalogueSync | None
    last_success: CatalogueSync | None
    running: bool
    stale: bool

    @property
    def synced(self) -> bool:
        return self.last_success is not None

    @property
    def last_failed(self) -> bool:
        return self.last_run is not None and not self.last_run.ok and self.last_run.outcome != CatalogueOutcome.RUNNING


def catalogue_status(account: Account, *, now: datetime | None = None) -> CatalogueStatus:
    now = now or timezone.now()
    runs = CatalogueSync.objects.filter(account=account)
    last_run = runs.filter(finished_at__isnull=False).order_by("-started_at", "-id").first()
    last_success = runs.filter(outcome=CatalogueOutcome.SUCCESS).order_by("-started_at", "-id").first()
    interval = settings.MODEL_CATALOGUE_SYNC_MINUTES
    stale = (
        last_success is not None
        and interval > 0
        and last_success.started_at < now - timedelta(minutes=interval * STALE_AFTER_INTERVALS)
    )
    return CatalogueStatus(
        last_run=last_run,
        last_success=last_success,
        running=runs.filter(finished_at__isnull=True).exists(),
        stale=stale,
    )


def recent_runs(account: Account, limit: int = RECENT_RUNS) -> list[CatalogueSync]:
    return list(CatalogueSync.objects.filter(account=account).order_by("-started_at", "-id")[:limit])


def _synced(account: Account) -> bool:
    return CatalogueSync.objects.filter(account=account, outcome=CatalogueOutcome.SUCCESS).exists()


@dataclass(frozen=True)
class CatalogueRow:
    name: str
    entry: CatalogueModel | None  # None: used in the period but never listed
    price: ModelPrice | None  # the price in effect now, whatever its source
    usage: Totals  # in the period

    @property
    def state(self) -> str:
        if self.entry is None:
            return State.UNLISTED
        return State.LISTED if self.entry.listed else State.REMOVED

    @property
    def flagged(self) -> bool:
        """Used in the period although the provider does not list it (any more)."""
        return self.state != State.LISTED and self.usage.requests > 0


def _group(row: CatalogueRow) -> int:
    """Flagged rows first, then listed models, then models removed without usage."""
    if row.flagged:
        return 0
    return 1 if row.state == State.LISTED else 2


def catalogue_rows(account: Account, period: Period, *, now: datetime | None = None) -> list[CatalogueRow]:
    """Every model the provider lists or listed, and every model used in the period the
    catalogue does not know (once it has synced): flagged rows first, then by name."""
    now = now or timezone.now()
    entries = {entry.name: entry for entry in CatalogueModel.objects.filter(account=account)}
    usage = {row.model: row.totals for row in selectors.model_rows(account=account, period=period)}
    names = set(entries) | (set(usage) if entries or _synced(account) else set())
    book = PriceBook.for_account(account, names)
    rows = [
        CatalogueRow(name=name, entry=entries.get(name), price=book.find(name, now), usage=usage.get(name, Totals()))
        for name in names
    ]
    rows.sort(key=lambda row: (_group(row), row.name.lower()))
    return rows


def unlisted_in_use(account: Account, period: Period) -> dict[str, CatalogueModel | None]:
    """Models used in the period that the provider does not list now → their catalogue entry
    (removed) or None (never listed). Empty while the catalogue has never synced."""
    if not _synced(account):
        return {}
    used = selectors.dimension_values(account=account, period=period, dimension="model")
    entries = {e.name: e for e in CatalogueModel.objects.filter(account=account, name__in=used)}
    return {name: entries.get(name) for name in used if name not in entries or not entries[name].listed}


def listed_names(account: Account) -> list[str]:
    return list(
        CatalogueModel.objects.filter(account=account, removed_at__isnull=True)
        .order_by("name")
        .values_list("name", flat=True)
    )


def model_choices(account: Account, period: Period) -> list[str]:
    """Model filter choices: models used in the period and models the provider lists."""
    used = selectors.dimension_values(account=account, period=period, dimension="model")
    return sorted(set(used) | set(listed_names(account)))


def unpriced_listed(account: Account, *, now: datetime | None = None) -> list[str]:
    """Listed models the price book has no price for now: a warning before any usage arrives."""
    now = now or timezone.now()
    names = listed_names(account)
    book = PriceBook.for_account(account, names)
    return [name for name in names if book.find(name, now) is None]


@dataclass(frozen=True)
class ModelCatalogue:
    """What the catalogue knows of one model, for its page."""

    synced: bool
    entry: CatalogueModel | None
    price: ModelPrice | None
    history: list[ModelPrice]  # the model's own price rows (exact name) in the account's currency

    @property
    def state(self) -> str:
        if self.entry is None:
            return State.UNLISTED
        return State.LISTED if self.entry.listed else State.REMOVED


def model_catalogue(account: Account, model: str, *, now: datetime | None = None) -> ModelCatalogue:
    now = now or timezone.now()
    history = list(
        ModelPrice.objects.filter(Q(account__isnull=True) | Q(account=account), model_pattern=model)
        .filter(currency=account.currency)
        .select_related("account")
        .order_by("-effective_from", "-id")[:PRICE_HISTORY]
    )
    return ModelCatalogue(
        synced=_synced(account),
        entry=CatalogueModel.objects.filter(account=account, name=model).first(),
        price=PriceBook.for_account(account, [model]).find(model, now),
        history=history,
    )


def is_known(account: Account, model: str) -> bool:
    return CatalogueModel.objects.filter(account=account, name=model).exists()
