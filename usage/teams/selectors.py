"""Reads of teams: the Teams page's list (each team with its keys) and a key's history."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone

from usage.models import Account, ApiKey
from usage.teams.models import KeyTeamAssignment, Team, TeamRelabel
from usage.teams.resolve import folded


@dataclass
class TeamRow:
    team: Team | None  # None: the keys without a team
    keys: list[ApiKey] = field(default_factory=list)


def teams_with_keys(account: Account) -> list[TeamRow]:
    """Every team of the account (by name) with the keys in it now, then the keys in none."""
    rows = {folded(team.name): TeamRow(team) for team in Team.objects.filter(account=account).order_by("name")}
    loose = TeamRow(None)
    for key in ApiKey.objects.filter(account=account).order_by("name"):
        row = rows.get(folded(key.team)) if key.team else None
        (row or loose).keys.append(key)
    return [*rows.values(), *([loose] if loose.keys else [])]


def key_history(key: ApiKey) -> list[KeyTeamAssignment]:
    """The key's assignments, most recent first."""
    return list(KeyTeamAssignment.objects.filter(api_key=key).select_related("team", "created_by").order_by("-id"))


def relabel_progress(account: Account) -> list[TeamRelabel]:
    """The background relabellings of renamed teams still running (a lost worker's left out)."""
    return list(
        TeamRelabel.objects.filter(
            account=account, finished_at__isnull=True, updated_at__gte=timezone.now() - TeamRelabel.STALE_AFTER
        ).order_by("started_at")
    )
