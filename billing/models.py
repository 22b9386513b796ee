"""Token Plans, purchases, the wallet ledger and balance snapshots arrive with the billing issue."""
