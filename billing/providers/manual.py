"""`manual`: balances are recorded by finance (`billing.services.record_manual_balance`); nothing to fetch."""

from __future__ import annotations

from billing.providers.base import Adapter


class Manual(Adapter):
    name = "manual"
