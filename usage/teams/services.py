"""Writes of teams: create, rename, merge, and move a key to a team from a moment.

Each keeps records, both rollups (`usage.rollups`: equal to a recount afterwards) and
`ApiKey.team` in step in one transaction, and sends `usage.teams.signals` inside it, so
billing relabels paid and team budgets and writes the audit entry in the same transaction.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext

from toki_dashboard import background
from usage import rollups
from usage.models import TOTAL_MONEY, Account, ApiKey, UsageRecord, UsageTotals
from usage.pricing.repricing import FIELDS, rollup_row
from usage.sql import upsert_adding
from usage.teams.models import KeyTeamAssignment, Team, TeamRelabel
from usage.teams.resolve import TeamResolver, folded, normalised
from usage.teams.signals import key_usage_moved, team_changed, team_renamed

CHUNK_SIZE = 2_000
# A rename relabels this many records in the request; more go to the background.
SYNC_RECORDS = 20_000


class Since(enum.StrEnum):
    """From when a moved key's requests count for its new team."""

    NOW = "now"
    DATE = "date"
    ALL = "all"


@dataclass(frozen=True)
class Move:
    key: ApiKey
    team: Team | None
    starts_at: datetime | None  # None: all of the key's past usage
    records: int  # records re-attributed


def _check_name(account: Account, name: str, *, exclude: Team | None = None) -> str:
    cleaned = normalised(name)
    if not cleaned:
        raise ValidationError(gettext("Give the team a name."), code="required")
    taken = Team.objects.filter(account=account, name__iexact=cleaned)
    if exclude is not None:
        taken = taken.exclude(pk=exclude.pk)
    if taken.exists() or any(folded(n) == folded(cleaned) for n in _names(account, exclude)):
        raise ValidationError(
            gettext("A team called “%(name)s” already exists; merge into it instead.") % {"name": cleaned},
            code="taken",
        )
    return cleaned


def _names(account: Account, exclude: Team | None) -> list[str]:
    # SQLite compares case-insensitively only in ASCII: compare the folded names here too.
    teams = Team.objects.filter(account=account)
    if exclude is not None:
        teams = teams.exclude(pk=exclude.pk)
    return list(teams.values_list("name", flat=True))


def create_team(account: Account, name: str, *, user: Any = None) -> Team:
    cleaned = _check_name(account, name)
    with transaction.atomic():
        team = Team.objects.create(account=account, name=cleaned)
        team_changed.send(
            sender=Team, account=account, instance=team, action="team.create", user=user, before=None,
            after={"name": team.name},
        )  # fmt: skip
    return team


def _relabel_rollups(account: Account, old_names: Sequence[str], new_name: str) -> None:
    """Every rollup row of the old teams added into the group of `new_name`, then removed.

    Rows whose records retention dropped are relabelled too: they are all that is left."""
    for rollup in rollups.ROLLUPS:
        rows = rollup.model._default_manager.filter(account=account).filter(_named(old_names)).exclude(team=new_name)
        groups: dict[tuple, dict[str, Any]] = {}
        pks = []
        with localcontext(prec=TOTAL_MONEY["max_digits"]):
            for row in rows.values("pk", rollup.bucket_field, "model", "api_key", *UsageTotals.COUNTERS):
                pks.append(row.pop("pk"))
                group = (row[rollup.bucket_field], row["model"], row["api_key"])
                acc = groups.setdefault(
                    group,
                    {"account": account.pk, rollup.bucket_field: group[0], "model": group[1], "api_key": group[2],
                     "team": new_name} | {c: 0 for c in UsageTotals.COUNTERS} | {"cost": Decimal(0)},
                )  # fmt: skip
                for counter in UsageTotals.COUNTERS:
                    acc[counter] += row[counter]
        for start in range(0, len(pks), 500):  # within SQLite's limit of bound parameters
            rollup.model._default_manager.filter(pk__in=pks[start : start + 500]).delete()
        deltas = [groups[g] for g in sorted(groups, key=lambda g: (g[0], g[1], g[2] or 0))]
        upsert_adding(rollup.model, deltas, conflict_sql=rollup.conflict_sql, counters=UsageTotals.COUNTERS)


def _named(names: Sequence[str]) -> Q:
    match = Q()
    for name in names:
        match |= Q(team__iexact=name)
    return match


def _relabel_everywhere(account: Account, old_names: Sequence[str], new_name: str) -> int:
    match = _named(old_names)
    moved = UsageRecord.objects.filter(account=account).filter(match).exclude(team=new_name).update(team=new_name)
    _relabel_rollups(account, old_names, new_name)
    ApiKey.objects.filter(account=account).filter(match).update(team=new_name)
    team_renamed.send(sender=Team, account=account, old_names=list(old_names), new_name=new_name)
    return moved


@dataclass(frozen=True)
class Rename:
    records: int  # relabelled now
    run: TeamRelabel | None  # the background relabelling of the rest, when there were many


def rename_team(team: Team, name: str, *, user: Any = None) -> Rename:
    """Rename `team`; its records, rollups, keys, paid and team budgets follow.

    Up to `SYNC_RECORDS` records are relabelled at once; more are left to
    the background (`continue_rename`, a chunk per transaction, progress on the Teams page),
    while the team, its keys and budgets take the new name at once."""
    cleaned = _check_name(team.account, name, exclude=team)
    account = team.account
    with transaction.atomic():
        team = Team.objects.select_for_update().get(pk=team.pk)
        old = team.name
        if old == cleaned:
            return Rename(0, None)
        Team.objects.filter(pk=team.pk).update(name=cleaned, first_seen_in_usage=False)
        team.name, team.first_seen_in_usage = cleaned, False
        limit = SYNC_RECORDS
        pending = UsageRecord.objects.filter(account=account).filter(_named([old])).exclude(team=cleaned)
        run = None
        if len(pending.values_list("id", flat=True)[: limit + 1]) > limit:
            run = TeamRelabel.objects.create(account=account, old_name=old, new_name=cleaned, total=pending.count())
            ApiKey.objects.filter(account=account).filter(_named([old])).update(team=cleaned)
            team_renamed.send(sender=Team, account=account, old_names=[old], new_name=cleaned)
            run_id = run.pk
            transaction.on_commit(lambda: background.enqueue("usage.tasks.relabel_team_records", run_id))
            moved = 0
        else:
            moved = _relabel_everywhere(account, [old], cleaned)
        team_changed.send(
            sender=Team, account=account, instance=team, action="team.rename", user=user,
            before={"name": old}, after={"name": cleaned, "records": moved, "in_background": run is not None},
        )  # fmt: skip
    return Rename(moved, run)


def continue_rename(run_id: int) -> int:
    """Relabel the records a large rename left, a chunk per transaction (each chunk's figures
    leave the old name's rollup groups and join the new name's), then what is left of the old
    name in the rollups and in billing. Returns the records relabelled."""
    run = TeamRelabel.objects.select_related("account").get(pk=run_id)
    account = run.account
    records = UsageRecord.objects.filter(account=account).filter(_named([run.old_name])).exclude(team=run.new_name)
    moved = 0
    while True:
        with transaction.atomic():
            done = _relabel_records(account, records, run.new_name, chunks=1)
            if done:
                TeamRelabel.objects.filter(pk=run.pk).update(done=F("done") + done, updated_at=timezone.now())
        moved += done
        if not done:
            break
    with transaction.atomic():
        _relabel_everywhere(account, [run.old_name], run.new_name)  # rows of dropped records; billing
        TeamRelabel.objects.filter(pk=run.pk).update(finished_at=timezone.now(), updated_at=timezone.now())
    return moved


def merge_teams(source: Team, into: Team, *, user: Any = None) -> int:
    """Fold `source` (a typo, a duplicate) into `into`: its records, rollups, keys, assignments
    and team budgets become `into`'s, and `source` is deleted. Returns the records relabelled."""
    if source.pk == into.pk or source.account_id != into.account_id:
        raise ValidationError(gettext("Choose another team of the same account to merge into."), code="same")
    with transaction.atomic():
        teams = {t.pk: t for t in Team.objects.select_for_update().filter(pk__in=[source.pk, into.pk])}
        source, into = teams[source.pk], teams[into.pk]
        moved = _relabel_everywhere(source.account, [source.name], into.name)
        KeyTeamAssignment.objects.filter(team=source).update(team=into)
        team_changed.send(
            sender=Team, account=source.account, instance=into, action="team.merge", user=user,
            before={"name": source.name, "id": source.pk}, after={"name": into.name, "records": moved},
        )  # fmt: skip
        source.delete()
    return moved


def starts_at_for(since: Since, day: datetime | None, *, now: datetime | None = None) -> datetime | None:
    """The moment a move takes effect: now, the start of `day` (a datetime at local midnight), or None (all)."""
    if since == Since.ALL:
        return None
    if since == Since.DATE:
        if day is None:
            raise ValidationError(gettext("Choose the date the key moved."), code="required")
        return day
    return now or timezone.now()


def _own_team_named() -> Q:
    """Records whose metadata named a team of their own: they keep it whatever their key does."""
    return Q(metadata__has_key="team") & ~Q(metadata__team="")


def move_key(
    key: ApiKey, team: Team | None, *, starts_at: datetime | None, user: Any = None, now: datetime | None = None
) -> Move:
    """`key` belongs to `team` (None: no team) from `starts_at` (None: all its past usage).

    The key's records from then on that name no team of their own are re-attributed, the
    rollup groups they leave and join move by exactly their figures, and `ApiKey.team` becomes
    the team the key has now. Records before `starts_at` keep the team they were counted for."""
    now = now or timezone.now()
    if team is not None and team.account_id != key.account_id:
        raise ValidationError(gettext("Choose a team of the key's account."), code="account")
    if starts_at is not None and starts_at > now:
        raise ValidationError(gettext("A key cannot move from a date in the future."), code="future")
    account = key.account
    new_name = team.name if team is not None else ""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        before = {"team": key.team}
        if not KeyTeamAssignment.objects.filter(api_key=key).exists():
            # The history starts with what the key was in until now, so that a late record from
            # before this move still gets that team.
            first = TeamResolver(account, [key]).named(key.team) if key.team else ""
            KeyTeamAssignment.objects.create(
                api_key=key, team=Team.objects.filter(account=account, name=first).first() if first else None,
                starts_at=None, created_at=now,
            )  # fmt: skip
        KeyTeamAssignment.objects.create(api_key=key, team=team, starts_at=starts_at, created_at=now, created_by=user)
        records = UsageRecord.objects.filter(account=account, api_key=key).exclude(_own_team_named())
        if starts_at is not None:
            records = records.filter(occurred_at__gte=starts_at)
        moved = _relabel_records(account, records.exclude(team=new_name), new_name)
        _drop_emptied_groups(account, key)
        current = TeamResolver(account, [key]).of_key(key, now)
        ApiKey.objects.filter(pk=key.pk).update(team=current)
        key.team = current
        key_usage_moved.send(sender=ApiKey, account=account, api_key_id=key.pk, since=starts_at)
        team_changed.send(
            sender=ApiKey, account=account, instance=key, action="key.move", user=user, before=before,
            after={"team": new_name, "from": starts_at.isoformat() if starts_at else "all", "records": moved},
        )  # fmt: skip
    return Move(key, team, starts_at, moved)


def _relabel_records(account: Account, records: Any, team: str, *, chunks: int | None = None) -> int:
    """Give `records` the team `team`, in chunks: each chunk's figures leave their old rollup
    groups and join the new ones."""
    moved, last_id = 0, 0
    while (chunks is None or moved < chunks * CHUNK_SIZE) and (
        chunk := list(records.filter(id__gt=last_id).order_by("id").only(*FIELDS)[:CHUNK_SIZE])
    ):
        last_id = chunk[-1].pk
        old_rows = [rollup_row(record) for record in chunk]
        UsageRecord.objects.filter(account=account, id__in=[r.pk for r in chunk]).update(team=team)
        rollups.move(old_rows, [row | {"team": team} for row in old_rows])
        moved += len(chunk)
    return moved


def _drop_emptied_groups(account: Account, key: ApiKey) -> None:
    """Groups the key's records all left count nothing: remove them, so no page lists them at zero."""
    for rollup in rollups.ROLLUPS:
        rollup.model._default_manager.filter(account=account, api_key=key, requests=0).delete()
