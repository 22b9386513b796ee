"""Keys & teams: usage per API key and per team for a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.db.models import Count, Max, Q, QuerySet

from usage.models import Account, ApiKey, DailyUsage, Team
from usage.periods import Period
from usage.selectors.totals import Totals, rollup_rows, rollup_sums

NO_TEAM = "~none"  # the team filter's value for usage recorded without a team


@dataclass(frozen=True)
class KeyUsage:
    """A key's usage in the period (zeros when unused) and the last day it was seen at all."""

    key_id: int | None
    name: str
    last4: str
    team: str
    provider_status: str
    totals: Totals
    last_seen: date | None


def _team_filter(rows: QuerySet[Any], team: str | None) -> QuerySet[Any]:
    if team is None:
        return rows
    return rows.filter(team="" if team == NO_TEAM else team)


def usage_by_key(*, account: Account, period: Period, team: str | None = None) -> list[KeyUsage]:
    """Every key of the account (or, with `team`, those used by or belonging to that team), with its
    usage in the period, plus one row without a key for requests that named none; by spend, then name.

    Two grouped queries over the rollup (period sums, and the last day seen ever) and one over ApiKey.
    """
    sums: dict[int | None, Totals] = {
        row.pop("api_key"): Totals(**row)
        for row in _team_filter(rollup_rows(account, period), team)
        .values("api_key")
        .annotate(**rollup_sums())
        .order_by()
    }
    last_seen: dict[int | None, date] = dict(
        DailyUsage.objects.filter(account=account, requests__gt=0)
        .values("api_key")
        .annotate(last=Max("day"))
        .order_by()
        .values_list("api_key", "last")
    )
    keys = ApiKey.objects.filter(account=account)
    if team is not None:
        owner = "" if team == NO_TEAM else team
        keys = keys.filter(Q(team=owner) | Q(pk__in=[pk for pk in sums if pk is not None]))
    rows = [
        KeyUsage(
            key_id=key.pk,
            name=key.name,
            last4=key.last4,
            team=key.team,
            provider_status=key.provider_status,
            totals=sums.get(key.pk, Totals()),
            last_seen=last_seen.get(key.pk),
        )
        for key in keys.only("id", "name", "last4", "team", "provider_status")
    ]
    if None in sums:
        rows.append(KeyUsage(None, "", "", "", "", sums[None], last_seen.get(None)))
    return sorted(rows, key=lambda r: (-r.totals.cost, -r.totals.tokens, r.key_id is None, r.name.lower()))


@dataclass(frozen=True)
class TeamUsage:
    team: str  # "" for usage recorded without a team
    keys: int  # distinct keys that sent requests for the team in the period
    totals: Totals


def usage_by_team(*, account: Account, period: Period) -> list[TeamUsage]:
    """Usage per team as recorded with each request (its metadata, else its key's team then), by spend."""
    rows = (
        rollup_rows(account, period)
        .filter(requests__gt=0)
        .values("team")
        .annotate(**rollup_sums(), keys=Count("api_key", distinct=True))
        .order_by("-cost", "-prompt_tokens", "team")
    )
    return [TeamUsage(team=row.pop("team"), keys=row.pop("keys"), totals=Totals(**row)) for row in rows]


def team_names(*, account: Account) -> list[str]:
    """Teams the filter offers: those keys belong to and those recorded on usage (without "")."""
    recorded = DailyUsage.objects.filter(account=account).exclude(team="").values_list("team", flat=True)
    owners = ApiKey.objects.filter(account=account).exclude(team="").values_list("team", flat=True)
    return sorted(set(recorded.distinct().order_by()) | set(owners.distinct().order_by()), key=str.lower)


def budget_targets(*, account: Account) -> list[str]:
    """What a team or key budget may name (billing.budgets.services checks the same): the
    account's teams and its keys' names, each once."""
    teams = Team.objects.filter(account=account).values_list("name", flat=True)
    keys = ApiKey.objects.filter(account=account).values_list("name", flat=True).distinct().order_by()
    return sorted(set(teams) | set(keys), key=str.lower)
