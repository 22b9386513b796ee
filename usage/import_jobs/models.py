"""An import started from the Import page, and the lines it could not store."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy


def format_duration(seconds: float) -> str:
    """3 s, 4 min 05 s, 1 h 02 min."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ImportState(models.TextChoices):
    QUEUED = "queued", gettext_lazy("Queued")
    RUNNING = "running", gettext_lazy("Running")
    DONE = "done", gettext_lazy("Done")
    FAILED = "failed", gettext_lazy("Failed")


class ImportJob(models.Model):
    """One uploaded file and what its import did. The file itself is deleted once the import
    ends (`stored_path` is emptied then); this row and its rejected lines stay."""

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    file_name = models.CharField(max_length=255)
    size_bytes = models.PositiveBigIntegerField()
    format = models.CharField(max_length=10)  # usage.importers.ImportFormat
    state = models.CharField(max_length=10, choices=ImportState.choices, default=ImportState.QUEUED)
    stored_path = models.CharField(max_length=500, blank=True, default="", help_text="The upload, until deleted")
    rows_read = models.PositiveBigIntegerField(default=0)
    stored = models.PositiveBigIntegerField(default=0)
    duplicates = models.PositiveBigIntegerField(default=0)
    rejected = models.PositiveBigIntegerField(default=0, help_text="Invalid rows, conflicts and rows set aside")
    skipped = models.PositiveBigIntegerField(default=0, help_text="Rows that are not usage (console top-ups…)")
    bytes_read = models.PositiveBigIntegerField(default=0)
    rate = models.FloatField(default=0.0, help_text="Rows read per second")
    seconds_left = models.FloatField(null=True, blank=True)
    position_label = models.CharField(max_length=10, default="line")
    message = models.TextField(blank=True, default="", help_text="Why the import stopped, if it did")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["account", "-created_at"], name="usage_import_account_idx")]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_state_display()})"

    @property
    def finished(self) -> bool:
        return self.state in (ImportState.DONE, ImportState.FAILED)

    @property
    def percent(self) -> int:
        if self.state == ImportState.DONE:
            return 100
        if not self.size_bytes:
            return 0
        return min(int(self.bytes_read * 100 / self.size_bytes), 100)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return ((self.finished_at or timezone.now()) - self.started_at).total_seconds()

    @property
    def duration_text(self) -> str:
        seconds = self.duration_seconds
        return "—" if seconds is None else format_duration(seconds)

    @property
    def time_left_text(self) -> str:
        if self.seconds_left is None:
            return "—"
        return gettext("about %(duration)s") % {"duration": format_duration(self.seconds_left)}


class ImportRejection(models.Model):
    """A line the import did not store: where, which field (empty: the whole line), why."""

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="rejections")
    position = models.PositiveBigIntegerField()
    field = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField()
    kind = models.CharField(max_length=10, default="rejected")  # usage.importers.ProblemKind

    class Meta:
        ordering = ["job", "position", "pk"]

    def __str__(self) -> str:
        return f"{self.position} {self.field}: {self.reason[:60]}"
