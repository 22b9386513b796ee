"""Which team a record counts for, at capture: the team its metadata names (an existing team
whatever its case and spacing, else a new one, flagged as first seen in usage), or the team
its key had at the record's `occurred_at` (the assignment history), for late imports too."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from usage.models import Account, ApiKey
from usage.teams.models import MAX_TEAM_NAME, KeyTeamAssignment, Team


def normalised(name: str) -> str:
    """A team name as stored: spaces trimmed and runs of spaces made one, NUL removed, capped."""
    return " ".join(name.replace("\x00", "").split())[:MAX_TEAM_NAME]


def folded(name: str) -> str:
    """What two names of the same team have in common."""
    return normalised(name).casefold()


class TeamResolver:
    """The teams of one account and the assignment histories of some of its keys, loaded once
    for a batch of records."""

    def __init__(self, account: Account, keys: Iterable[ApiKey]) -> None:
        self.account = account
        self.names = {
            folded(name): name for name in Team.objects.filter(account=account).values_list("name", flat=True)
        }
        self.keys = {key.pk: key for key in keys}
        self._named: dict[str, str] = {}  # a name as written → as stored: a batch names few teams
        # Newest first: the first one starting at or before a moment is the one in effect.
        self.histories: dict[int, list[tuple[datetime | None, str]]] = {}
        assignments = (
            KeyTeamAssignment.objects.filter(api_key__in=list(self.keys))
            .order_by("api_key", "-id")
            .values_list("api_key", "starts_at", "team__name")
        )
        for key_id, starts_at, team in assignments:
            self.histories.setdefault(key_id, []).append((starts_at, team or ""))

    def named(self, name: str) -> str:
        """The stored name of the team called `name` (created if the account has none)."""
        known = self._named.get(name)
        if known is None:
            known = self._named[name] = self._stored_name(name)
        return known

    def _stored_name(self, name: str) -> str:
        wanted = normalised(name)
        if not wanted:
            return ""
        found = self.names.get(wanted.casefold())
        if found is None:
            # A batch beside this one may create it at the same moment: insert-or-skip, then read.
            Team.objects.bulk_create(
                [Team(account=self.account, name=wanted, first_seen_in_usage=True)], ignore_conflicts=True
            )
            found = Team.objects.filter(account=self.account, name__iexact=wanted).values_list("name", flat=True)[0]
            self.names[wanted.casefold()] = found
        return found

    def of_key(self, key: ApiKey, at: datetime) -> str:
        """The team `key` had at `at`: the assignment in effect then, else its current team."""
        history = self.histories.get(key.id)
        for starts_at, team in history or ():
            if starts_at is None or starts_at <= at:
                return team
        if history is not None:  # assigned only from later on: before that, no team
            return ""
        return key.team

    def team_for(self, metadata_team: str | None, key: ApiKey | None, at: datetime) -> str:
        if metadata_team and (named := self.named(metadata_team)):
            return named
        return self.of_key(key, at) if key is not None else ""
