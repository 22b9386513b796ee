"""What every provider adapter gets and gives back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, ClassVar

from billing.providers.connection import Connection as Connection  # where adapters have always found it
from billing.providers.model_list import listing_from_models
from usage.catalogue.listing import Listing


@dataclass(frozen=True)
class BalanceReading:
    """A balance as the provider reported it, converted to money where possible."""

    balance: Decimal | None  # money left, in `currency`
    currency: str
    token_balance: int | None = None
    used: Decimal | None = None  # lifetime spend, in `currency`
    request_count: int | None = None  # lifetime requests
    raw: dict[str, Any] = field(default_factory=dict)


class Adapter:
    """A provider: reads a balance, and optionally per-request logs and key statuses.

    Adapters only talk HTTP and parse answers; storing is the sync service's job.
    """

    name: ClassVar[str]
    reads_logs: ClassVar[bool] = False

    def balance(self, connection: Connection) -> BalanceReading | None:
        return None

    def log_pages(self, connection: Connection, *, start: int, end: int) -> Iterator[list[dict[str, Any]]]:
        """Raw log rows with start <= created_at <= end (unix seconds), a page at a time."""
        return iter(())

    def key_statuses(self, connection: Connection) -> dict[str, str]:
        """Key name → status (enabled, disabled, expired, exhausted)."""
        return {}

    def model_listing(self, connection: Connection) -> Listing:
        """The models the provider lists, with what it says they cost: `{base}/models` with
        the relay key, unless the provider publishes more (billing.providers.model_list)."""
        return listing_from_models(connection)
