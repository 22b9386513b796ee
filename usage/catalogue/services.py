"""Writes of the model catalogue: claim a sync, record its failure, or apply a listing.

A successful listing is the whole truth about availability: models in it are listed
(added, or back if they had been removed), models missing from it are flagged removed.
Provider prices become ModelPrice rows of the account with source "provider", in the
shape `usage.pricing.list_prices.sync_prices` gives genai-prices rows: a changed price closes the
open row at the sync and opens a new one from then, history is never edited, a
model's first price also covers its earlier usage, and the records a new or changed
price affects are repriced in the background. A failed sync changes nothing but its
own row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from usage.catalogue.listing import ListedModel, Listing, ProviderPrice
from usage.catalogue.models import CatalogueModel, CatalogueOutcome, CatalogueSync, CatalogueTrigger
from usage.models import Account, ModelPrice, PriceSource
from usage.pricing.list_prices import BEGINNING
from usage.pricing.repricing import Scope, schedule

# A sync still unfinished after this long belongs to a worker that died.
STALE_CLAIM = timedelta(minutes=30)
MAX_ERROR = 2000
GLOB_CHARS = frozenset("*?[")
MONEY_QUANTUM = Decimal("1e-10")  # ModelPrice keeps 10 decimal places


def start_sync(
    account: Account,
    *,
    trigger: str = CatalogueTrigger.SCHEDULE,
    credentials_digest: str = "",
    now: datetime | None = None,
) -> CatalogueSync | None:
    """The run that claims the account's catalogue, or None while another one runs."""
    now = now or timezone.now()
    CatalogueSync.objects.filter(account=account, finished_at__isnull=True, started_at__lt=now - STALE_CLAIM).update(
        finished_at=now, outcome=CatalogueOutcome.ERROR, error="abandoned: the worker running it stopped"
    )
    try:
        with transaction.atomic():
            return CatalogueSync.objects.create(
                account=account, trigger=trigger, started_at=now, credentials_digest=credentials_digest
            )
    except IntegrityError:  # the unfinished run of another worker holds the claim
        return None


def finish_failed(run: CatalogueSync, outcome: str, error: str) -> None:
    """Close a failed run; the catalogue and the price book stay as they were."""
    run.finished_at = timezone.now()
    run.outcome = outcome
    run.error = error[:MAX_ERROR]
    run.save(update_fields=["finished_at", "outcome", "error"])


@dataclass
class _Counts:
    added: int = 0
    removed: int = 0
    returned: int = 0
    prices_added: int = 0
    prices_changed: int = 0


@transaction.atomic
def apply_listing(run: CatalogueSync, listing: Listing, *, now: datetime | None = None) -> CatalogueSync:
    """Store a successful listing: models, removals and prices, and close the run."""
    now = now or timezone.now()
    account = run.account
    listed = _unique(listing.models)
    counts = _Counts()
    _apply_models(account, listed, now, counts)
    _apply_prices(account, {m.name: m.price for m in listed.values() if m.price is not None}, now, counts)
    run.finished_at = max(now, run.started_at)
    run.outcome = CatalogueOutcome.SUCCESS
    run.source = listing.source[:100]
    run.error = "; ".join(listing.notes)[:MAX_ERROR]
    run.models_listed = len(listed)
    run.added, run.removed, run.returned = counts.added, counts.removed, counts.returned
    run.prices_added, run.prices_changed = counts.prices_added, counts.prices_changed
    run.save()
    return run


def _unique(models: tuple[ListedModel, ...]) -> dict[str, ListedModel]:
    """By name; a name listed twice keeps its first entry."""
    found: dict[str, ListedModel] = {}
    for model in models:
        found.setdefault(model.name, model)
    return found


def _apply_models(account: Account, listed: dict[str, ListedModel], now: datetime, counts: _Counts) -> None:
    rows = {row.name: row for row in CatalogueModel.objects.select_for_update().filter(account=account)}
    new: list[CatalogueModel] = []
    changed: list[CatalogueModel] = []
    for name, model in listed.items():
        row = rows.get(name)
        if row is None:
            new.append(
                CatalogueModel(
                    account=account,
                    name=name,
                    owned_by=model.owned_by,
                    context_length=model.context_length,
                    listed_created_at=model.created_at,
                    first_seen_at=now,
                    last_seen_at=now,
                    price_note=model.price_note,
                )
            )
            continue
        if row.removed_at is not None:
            counts.returned += 1
        row.removed_at = None
        row.last_seen_at = now
        row.owned_by = model.owned_by or row.owned_by
        # A field the provider stops sending keeps its last known value.
        row.context_length = model.context_length if model.context_length is not None else row.context_length
        row.listed_created_at = model.created_at or row.listed_created_at
        row.price_note = model.price_note
        changed.append(row)
    for name, row in rows.items():
        if name not in listed and row.removed_at is None:
            row.removed_at = now
            changed.append(row)
            counts.removed += 1
    CatalogueModel.objects.bulk_create(new, batch_size=500)
    fields = ["removed_at", "last_seen_at", "owned_by", "context_length", "listed_created_at", "price_note"]
    CatalogueModel.objects.bulk_update(changed, fields, batch_size=500)
    counts.added = len(new)


def _stored(price: ProviderPrice) -> ProviderPrice:
    """The price as the database keeps it (10 decimal places), so that comparing it with a
    stored row does not see a change in digits the column cannot hold."""

    def money(value: Decimal) -> Decimal:
        return value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)

    cached = price.cached_input_per_mtok
    return ProviderPrice(
        price.currency,
        money(price.input_per_mtok),
        money(cached) if cached is not None else None,
        money(price.output_per_mtok),
    )


def _same(price: ProviderPrice, row: ModelPrice) -> bool:
    return (price.currency, price.input_per_mtok, price.cached_input_per_mtok, price.output_per_mtok) == (
        row.currency,
        row.input_per_mtok,
        row.cached_input_per_mtok,
        row.output_per_mtok,
    )


def _apply_prices(account: Account, prices: dict[str, ProviderPrice], now: datetime, counts: _Counts) -> None:
    ours = ModelPrice.objects.filter(account=account, source=PriceSource.PROVIDER)
    rows = list(ours.select_for_update().order_by("model_pattern", "effective_from", "id"))
    open_rows = {r.model_pattern: r for r in rows if r.effective_to is None}
    seen = {r.model_pattern for r in rows}
    to_close: list[ModelPrice] = []
    to_open: list[ModelPrice] = []
    scopes: list[Scope] = []
    for name, listed_price in sorted(prices.items()):
        price = _stored(listed_price)
        if GLOB_CHARS & set(name):
            continue  # the price book would read the name as a pattern and price other models with it
        current = open_rows.get(name)
        if current is not None and _same(price, current):
            continue
        start = now if name in seen else BEGINNING
        if current is not None:
            to_close.append(current)
            scopes.append(Scope(account.pk, current.currency, name, now, None))
            counts.prices_changed += 1
        else:
            counts.prices_added += 1
        to_open.append(_row(account, name, price, start, now))
        scopes.append(Scope(account.pk, price.currency, name, start, None))
    if to_close:
        ModelPrice.objects.filter(pk__in=[r.pk for r in to_close]).update(effective_to=now)
    # bulk_create sends no post_save: the sync's changes are repriced as one background job.
    ModelPrice.objects.bulk_create(to_open, batch_size=500)
    schedule(scopes)


def _row(account: Account, name: str, price: ProviderPrice, start: datetime, now: datetime) -> ModelPrice:
    return ModelPrice(
        account=account,
        model_pattern=name,
        input_per_mtok=price.input_per_mtok,
        cached_input_per_mtok=price.cached_input_per_mtok,
        output_per_mtok=price.output_per_mtok,
        currency=price.currency,
        effective_from=start,
        effective_to=None,
        source=PriceSource.PROVIDER,
        created_at=now,
    )
