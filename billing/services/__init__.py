"""Writes of the billing app: plans, purchases, wallet entries, manual balances.

Nothing is edited or deleted: a purchase is voided (who, when, why) and a wallet
entry is reversed by a new entry. Every change leaves an AuditEvent. Purchases
and wallet entries carry an idempotency key, unique per account: the same key with
the same content gives back the stored row, with other content it is refused.
Anything that changes what allocations should be asks for a recompute from the
earliest moment it affects (`billing.recompute`).

The package: `common` (errors, idempotency digests, checks every write makes),
`purchases` (the plan catalogue and purchases), `wallet` (wallet entries and their reversal) and
`balances` (balances read off the provider's console by people). Callers import from
`billing.services`.
"""

from __future__ import annotations

from billing.services.balances import record_manual_balance
from billing.services.common import (
    MAX_TOKENS,
    PLAN_FIELDS,
    PURCHASE_FIELDS,
    RESERVED_KEY_PREFIX,
    WALLET_FIELDS,
    BillingError,
    IdempotencyConflict,
)
from billing.services.purchases import PurchaseData, record_purchase, save_plan, void_purchase
from billing.services.wallet import WalletEntryData, record_wallet_entry, reverse_wallet_entry

__all__ = [
    "MAX_TOKENS",
    "PLAN_FIELDS",
    "PURCHASE_FIELDS",
    "RESERVED_KEY_PREFIX",
    "WALLET_FIELDS",
    "BillingError",
    "IdempotencyConflict",
    "PurchaseData",
    "WalletEntryData",
    "record_manual_balance",
    "record_purchase",
    "record_wallet_entry",
    "reverse_wallet_entry",
    "save_plan",
    "void_purchase",
]
