"""What each model was seen accepting: per (account, model, optional parameter), the first and
last successful call that used it. Written with the records (usage.services.record_usage)."""

from __future__ import annotations

from django.db import models


class AcceptedParameter(models.Model):
    """A model answered a call using this optional parameter (by name) without failing."""

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="+")
    model = models.CharField(max_length=200)
    parameter = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    class Meta:
        ordering = ["account", "model", "parameter"]
        constraints = [
            models.UniqueConstraint(fields=["account", "model", "parameter"], name="acceptedparameter_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model}: {self.parameter}"
