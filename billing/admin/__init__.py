"""Billing in the Django admin until the finance pages exist; one module per concern.

Purchases and wallet entries are added through the services (so they are audited
and allocations follow) and never changed or deleted: purchases are voided and
wallet entries reversed by actions that ask for a reason. Ledger, allocations,
snapshots, sync runs and the audit trail are read-only. Credentials are write-only.

- `billing.admin.plans`: Token Plans and purchases;
- `billing.admin.ledger`: the wallet ledger, allocations, expiries, the audit trail;
- `billing.admin.providers`: balance snapshots, sync runs, provider credentials and "Sync now";
- `billing.admin.alerting`: budgets, alert channels and the delivery log;
- `billing.admin.common`: what they share.

Importing this package registers every page.
"""

from __future__ import annotations

from billing.admin import alerting, ledger, plans, providers

__all__ = ["alerting", "ledger", "plans", "providers"]
