"""The demo account's model catalogue: what a provider's list could say of the demo models.

Two listings, as two syncs would store them: ten days ago every demo model plus one not
used yet; today the same without `qwen-max`, which the demo keeps calling, so the
catalogue, the Models page and the model's page show a removed model still in use.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from usage.catalogue import services
from usage.catalogue.listing import ListedModel, Listing
from usage.catalogue.models import CatalogueOutcome, CatalogueSync, CatalogueTrigger
from usage.models import Account

SOURCE = "demo data"
LISTED = (
    ListedModel("gpt-4o", "openai", context_length=128_000),
    ListedModel("gpt-4o-mini", "openai", context_length=128_000),
    ListedModel("gpt-4.1", "openai", context_length=1_047_576),
    ListedModel("claude-sonnet-4", "anthropic", context_length=200_000),
    ListedModel("deepseek-chat", "deepseek", context_length=65_536),
    ListedModel("deepseek-reasoner", "deepseek", context_length=65_536),
    ListedModel("qwen-max", "alibaba", context_length=32_768),
    ListedModel("text-embedding-3-small", "openai", context_length=8_191),
    ListedModel("doubao-1.5-pro-32k", "bytedance", context_length=32_768),
)
REMOVED = "qwen-max"


def seed_demo_catalogue(account: Account, *, now: datetime | None = None) -> int:
    """Store the two listings unless the account's catalogue was ever synced; returns how many."""
    if CatalogueSync.objects.filter(account=account, outcome=CatalogueOutcome.SUCCESS).exists():
        return 0
    now = now or timezone.now()
    listings = (
        (now - timedelta(days=10), LISTED),
        (now, tuple(m for m in LISTED if m.name != REMOVED)),
    )
    for at, models in listings:
        run = services.start_sync(account, trigger=CatalogueTrigger.COMMAND, now=at)
        if run is None:
            return 0
        services.apply_listing(run, Listing(models=models, source=SOURCE), now=at)
    return len(listings)
