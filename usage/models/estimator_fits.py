"""The calibrated token estimator's stored fits."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class EstimatorFit(models.Model):
    """Coefficients of the calibrated token estimator for one model, family or all models
    (README "Calibrated token estimation"), with the error measured on records it was not trained on.

    Refits add rows; the one in use for a (scope, kind) is `active`, and an estimated
    record names it in its `estimator_version` ("calibrated-<id>").
    """

    class Kind(models.TextChoices):
        PROFILE = "profile", "Character-class profile"
        LENGTHS = "lengths", "Characters and bytes"

    scope = models.CharField(max_length=220, help_text='A model name, "family:<name>", or "*" for all models')
    kind = models.CharField(max_length=16, choices=Kind.choices)
    weights = models.JSONField(help_text="Feature name → tokens per unit")
    samples = models.PositiveIntegerField(help_text="Records trained on")
    holdout_samples = models.PositiveIntegerField(help_text="Records the errors were measured on")
    median_error = models.FloatField(help_text="Median relative error of total tokens on held-out records")
    p90_error = models.FloatField(help_text="90th percentile of the same")
    fallback_median_error = models.FloatField(help_text="The fallback estimator's median error on the same records")
    fallback_p90_error = models.FloatField()
    active = models.BooleanField(default=False)
    trained_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["scope", "kind", "-trained_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["scope", "kind"], condition=models.Q(active=True), name="estimatorfit_one_active"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.scope} ({self.kind}) #{self.pk}"

    @property
    def version(self) -> str:
        return f"calibrated-{self.pk}"
