"""Signals of the billing app, for alerting."""

from django.dispatch import Signal

# Sent after a sync when the provider's balance and the dashboard's consumption drift
# apart beyond the account's threshold. Arguments: account, reconciliation
# (billing.selectors.Reconciliation). Sent on every such sync, not only the first.
balance_drift = Signal()
