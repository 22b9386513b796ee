"""Signals other apps listen to; usage never imports them back."""

from django.dispatch import Signal

# Sent after a batch of new records has committed. Arguments: account, inserted (int).
usage_recorded = Signal()
