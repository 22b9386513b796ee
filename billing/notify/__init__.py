"""Telling people: a notification (one transition of an alert, or a test) delivered to the
rule's email recipients and to every channel of its account — email, signed webhooks and
chat services through apprise — each delivery claimed, retried with backoff and logged."""
