"""Billing's models, one module per concern; every model is importable from here.

- `billing.models.plans`: Token Plans and their purchases;
- `billing.models.wallet`: the wallet ledger;
- `billing.models.allocation`: allocations, expiries, the paid rollup and the recompute's bookkeeping;
- `billing.models.sync`: provider sync (snapshots, state, runs);
- `billing.models.audit`: the audit trail;
- `billing.models.budgets`: budgets;
- `billing.models.alerts`: alert rules, episodes, notifications, channels and deliveries.

Nothing here is edited in place or deleted by the application: a purchase is voided (who,
when, why), a wallet entry is reversed by a new entry, and every change leaves an
AuditEvent. Allocations and expiries are derived data, rewritten by
`billing.recompute.refresh_allocations` from a checkpoint.
"""

from __future__ import annotations

from billing.models.alerts import (
    MEASURED,
    AlertChannel,
    AlertDelivery,
    AlertEpisode,
    AlertKind,
    AlertNotification,
    AlertRule,
    ChannelKind,
    DeliveryStatus,
    NotificationKind,
    parse_tiers,
)
from billing.models.allocation import Allocation, BillingState, DailyPaid, PlanExpiry, RecomputeRequest
from billing.models.audit import AuditEvent
from billing.models.budgets import Budget, BudgetMeasure, BudgetPeriod, BudgetScope
from billing.models.plans import PlanPurchase, TokenBasis, TokenPlan, models_match
from billing.models.sync import (
    BalanceSnapshot,
    BalanceSource,
    ProviderAccount,
    SyncOutcome,
    SyncRun,
    SyncState,
    SyncTrigger,
)
from billing.models.wallet import MANUAL_WALLET_KINDS, WalletEntry, WalletEntryKind

__all__ = [
    "MANUAL_WALLET_KINDS",
    "MEASURED",
    "AlertChannel",
    "AlertDelivery",
    "AlertEpisode",
    "AlertKind",
    "AlertNotification",
    "AlertRule",
    "Allocation",
    "AuditEvent",
    "BalanceSnapshot",
    "BalanceSource",
    "BillingState",
    "Budget",
    "BudgetMeasure",
    "BudgetPeriod",
    "BudgetScope",
    "ChannelKind",
    "DailyPaid",
    "DeliveryStatus",
    "NotificationKind",
    "PlanExpiry",
    "PlanPurchase",
    "ProviderAccount",
    "RecomputeRequest",
    "SyncOutcome",
    "SyncRun",
    "SyncState",
    "SyncTrigger",
    "TokenBasis",
    "TokenPlan",
    "WalletEntry",
    "WalletEntryKind",
    "models_match",
    "parse_tiers",
]
