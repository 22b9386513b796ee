"""Signals other apps listen to; usage never imports them back."""

from django.dispatch import Signal

# Sent after a batch of new records has committed. Arguments: account, inserted (int), source.
usage_recorded = Signal()

# Sent after stored records' tokens or costs were corrected outside repricing (which billing
# follows through RepricingRun). Arguments: account, since (the earliest occurred_at changed),
# reason (str).
usage_revised = Signal()

# Sent inside the transaction that renamed an API key. Arguments: account, api_key_id (int),
# old_name, new_name (str), user (or None).
key_renamed = Signal()
