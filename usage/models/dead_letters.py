"""DeadLetter: a usage record that could not be stored as it was (usage.deadletters writes
and replays them). Kept in a module of its own; `usage.models` exports it."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from usage.models.accounts import Account
from usage.models.records import RecordSource


class DeadLetter(models.Model):
    """A record set aside with the reason and its metadata, never prompt or output text: a
    model name with a NUL byte after a 200 from upstream, a value the database refuses.
    An administrator fixes it (or the code) and replays it; a replay that stores it, or
    finds it stored, resolves the letter, and replaying again changes nothing."""

    class Resolution(models.TextChoices):
        STORED = "stored", "Stored"
        DUPLICATE = "duplicate", "Already stored"
        CONFLICT = "conflict", "Another record has its request_id"
        DISCARDED = "discarded", "Discarded"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    source = models.CharField(max_length=16, choices=RecordSource.choices)
    request_id = models.CharField(max_length=200, blank=True, help_text="Printable: odd characters escaped")
    reason = models.TextField()
    # JSON in ASCII (\u0000 and lone surrogates survive as escapes): the fields of the record.
    payload = models.TextField(help_text="The record's fields as JSON; edit them to fix the record, then replay it")
    # A full key (`sk-…`) is never in the payload: it is encrypted here, like provider credentials.
    api_key_encrypted = models.TextField(blank=True, default="", editable=False)
    digest = models.CharField(max_length=64, editable=False, help_text="The same record set aside twice is one letter")
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0, help_text="Replays tried")
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "digest"], condition=models.Q(resolved_at__isnull=True), name="deadletter_one_open"
            ),
        ]
        indexes = [models.Index(fields=["resolved_at", "created_at"], name="deadletter_open_idx")]

    def __str__(self) -> str:
        return f"{self.request_id or 'record'} ({self.get_source_display()})"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
