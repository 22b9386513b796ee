"""Team and KeyTeamAssignment: an account's teams and the history of each key's team."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy

MAX_TEAM_NAME = 100  # the width of the team columns of records, rollups and keys


class Team(models.Model):
    """A team of an account. Its name is what records and rollups carry; unique per account
    whatever its case ("Growth" and "growth" are one team)."""

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="teams")
    name = models.CharField(gettext_lazy("Name"), max_length=MAX_TEAM_NAME)
    # Created by ingestion for a name a record carried that no team had: an admin may want to
    # rename it or merge it into the team that was meant.
    first_seen_in_usage = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint("account", Lower("name"), name="team_unique_name_per_account"),
        ]

    def __str__(self) -> str:
        return self.name


class KeyTeamAssignment(models.Model):
    """From `starts_at` (None: from the key's first request) the key's requests that name no
    team of their own count for `team` (None: no team), until a later assignment takes over.

    The assignment in effect at a moment is the most recently made one starting at or before
    it: a later move "from 1 March" overrides what earlier moves said about the time after
    1 March, and leaves the time before alone."""

    api_key = models.ForeignKey("usage.ApiKey", on_delete=models.CASCADE, related_name="team_assignments")
    team = models.ForeignKey(Team, on_delete=models.PROTECT, null=True, blank=True, related_name="assignments")
    starts_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["api_key", "-id"]

    def __str__(self) -> str:
        return f"{self.api_key_id} → {self.team_id or '-'} from {self.starts_at or 'the start'}"


class TeamRelabel(models.Model):
    """Progress of one rename whose records were too many to relabel in the request: the
    records still carrying `old_name` are relabelled in the background, a chunk per
    transaction (`usage.teams.services.continue_rename`), and the Teams page says how far it is."""

    STALE_AFTER = timedelta(minutes=15)  # not updated for this long: the worker was lost

    account = models.ForeignKey("usage.Account", on_delete=models.CASCADE, related_name="+")
    old_name = models.CharField(max_length=MAX_TEAM_NAME)
    new_name = models.CharField(max_length=MAX_TEAM_NAME)
    total = models.BigIntegerField(help_text="Records to relabel when the rename was made")
    done = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.old_name} → {self.new_name}: {self.done}/{self.total}"
