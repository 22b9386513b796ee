"""What a provider's model list says, as `billing.model_sync` hands it to `services.apply_listing`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class ProviderPrice:
    """A per-token price the provider publishes, per million tokens."""

    currency: str
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None
    output_per_mtok: Decimal


@dataclass(frozen=True)
class ListedModel:
    name: str
    owned_by: str = ""
    created_at: datetime | None = None
    context_length: int | None = None
    price: ProviderPrice | None = None
    # Why there is no per-token price although the provider published one (per request, tiered…).
    price_note: str = ""


@dataclass(frozen=True)
class Listing:
    models: tuple[ListedModel, ...]
    source: str  # what was read, e.g. "/v1/models + /api/pricing"
    notes: tuple[str, ...] = field(default=())
