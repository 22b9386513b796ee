"""Reads of the billing app, aggregated in the database: balances, plan burn-down,
the wallet statement, why a record cost what it did, and reconciliation with what
the provider reports.

The package: `balances` (wallet, plans, provider readings, how a record was paid),
`reconciliation` (the provider's balance change against the dashboard's consumption) and
`statements` (the ledger and audit pages, monthly consumption and statements). Callers import
from `billing.selectors`.
"""

from __future__ import annotations

from billing.selectors.balances import (
    ZERO,
    AllocationLine,
    PlanStatus,
    expired_tokens,
    explain_record,
    latest_snapshot,
    plan_statuses,
    sync_history,
    sync_state,
    token_balance,
    wallet_balance,
    wallet_entries,
)
from billing.selectors.reconciliation import Cause, Reconciliation, likely_causes, reconcile
from billing.selectors.statements import (
    SYSTEM_EVENTS,
    AuditChoices,
    LedgerDay,
    LedgerMonth,
    MonthConsumption,
    PlanBurn,
    Statement,
    WalletMovements,
    audit_choices,
    audit_trail,
    consumption,
    ledger_by_month_and_day,
    monthly_statement,
    wallet_ledger,
    zero_ledger_lines,
)

__all__ = [
    "SYSTEM_EVENTS",
    "ZERO",
    "AllocationLine",
    "AuditChoices",
    "Cause",
    "LedgerDay",
    "LedgerMonth",
    "MonthConsumption",
    "PlanBurn",
    "PlanStatus",
    "Reconciliation",
    "Statement",
    "WalletMovements",
    "audit_choices",
    "audit_trail",
    "consumption",
    "expired_tokens",
    "explain_record",
    "latest_snapshot",
    "ledger_by_month_and_day",
    "likely_causes",
    "monthly_statement",
    "plan_statuses",
    "reconcile",
    "sync_history",
    "sync_state",
    "token_balance",
    "wallet_balance",
    "wallet_entries",
    "wallet_ledger",
    "zero_ledger_lines",
]
