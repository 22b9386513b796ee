"""Forms of teams: a team's name (create, rename), the team to merge one into, and a key's
name and team with from when the move counts."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import formats
from django.utils.translation import gettext, gettext_lazy

from usage.forms import StyledForm
from usage.models import Account, ApiKey
from usage.periods import dashboard_tz
from usage.services import rename_api_key
from usage.teams.models import MAX_TEAM_NAME, Team
from usage.teams.resolve import folded
from usage.teams.services import Move, Since, move_key, starts_at_for


class TeamNameForm(StyledForm):
    name = forms.CharField(label=gettext_lazy("Team name"), max_length=MAX_TEAM_NAME)


class MergeForm(StyledForm):
    """Which team absorbs the one being merged (a typo into the team that was meant)."""

    into = forms.ModelChoiceField(label=gettext_lazy("Merge into"), queryset=Team.objects.none(), empty_label=None)

    def __init__(self, *args: Any, team: Team, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: forms.ModelChoiceField = self.fields["into"]
        field.queryset = Team.objects.filter(account_id=team.account_id).exclude(pk=team.pk)


SINCE_CHOICES = [
    (Since.NOW.value, gettext_lazy("From now: its past usage stays with the team it was counted for")),
    (Since.DATE.value, gettext_lazy("From a date: its usage from that day on moves to the new team")),
    (Since.ALL.value, gettext_lazy("All past usage: every request it made moves to the new team")),
]


class KeyForm(StyledForm):
    """The things people may change about a key: its name, and its team from a moment. Its
    fingerprint and last four never change; a team is chosen among the account's teams.

    Moving a key's past usage rewrites what finance has already reported by team, so only
    those who may (`may_move_the_past`: admins) are offered it; anyone else moves a key from now."""

    name = forms.CharField(label=gettext_lazy("Display name"), max_length=200)
    team = forms.ChoiceField(label=gettext_lazy("Team"), required=False)
    since = forms.ChoiceField(
        label=gettext_lazy("Re-attribute its past usage?"),
        choices=SINCE_CHOICES,
        required=False,
        widget=forms.RadioSelect,
        help_text=gettext_lazy("Only when the team changes. Requests that named a team of their own keep it."),
    )
    day = forms.DateField(
        label=gettext_lazy("Moved on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=gettext_lazy("With “from a date”: the first day (dashboard time zone) counted for the new team."),
    )

    def __init__(self, *args: Any, account: Account, may_move_the_past: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.account = account
        since: forms.ChoiceField = self.fields["since"]
        since.widget.attrs.pop("class", None)  # radio buttons, not a text box
        if not may_move_the_past:
            since.choices = SINCE_CHOICES[:1]
            since.help_text = gettext_lazy(
                "Only an admin can move its past usage (from a date, or all of it): that changes team figures"
                " finance has already reported."
            )
            del self.fields["day"]
        names = list(Team.objects.filter(account=account).values_list("name", flat=True))
        field: forms.ChoiceField = self.fields["team"]
        field.choices = [("", gettext_lazy("No team")), *((name, name) for name in names)]
        if current := self.initial.get("team"):  # the team's own spelling, if the key's differs
            self.initial["team"] = {folded(name): name for name in names}.get(folded(current), current)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") == Since.DATE and not data.get("day"):
            self.add_error("day", ValidationError(gettext_lazy("Choose the day the key moved."), code="required"))
        return data

    def starts_at(self) -> datetime | None:
        since = Since(self.cleaned_data.get("since") or Since.NOW)
        day: date | None = self.cleaned_data.get("day")
        midnight = datetime.combine(day, time(0), tzinfo=dashboard_tz()) if day else None
        return starts_at_for(since, midnight)

    def save(self, key: ApiKey, *, user: Any) -> Move | None:
        """Renames the key and, if its team changed, moves it; None when the team stayed."""
        data = self.cleaned_data
        try:
            with transaction.atomic():
                rename_api_key(key, name=data["name"], team=key.team, user=user)
                unchanged = folded(data["team"]) == folded(key.team)
                if unchanged and data.get("since") not in (Since.DATE, Since.ALL):
                    return None
                team = Team.objects.filter(account=self.account, name=data["team"]).first() if data["team"] else None
                return move_key(key, team, starts_at=self.starts_at(), user=user)
        except ValidationError as error:
            self.add_error("day", error)
            raise


def saved_message(key: ApiKey, move: Move | None) -> str:
    """What the key's edit page says once saved: the move, and how many requests it re-attributed."""
    if move is None:
        return gettext("Saved key “%(key)s”.") % {"key": key.name}
    team = move.team.name if move.team else gettext("no team")
    if move.starts_at is None:
        return gettext("Moved key “%(key)s” to %(team)s with all its past usage: %(count)s requests re-attributed.") % {
            "key": key.name,
            "team": team,
            "count": move.records,
        }
    return gettext("Moved key “%(key)s” to %(team)s from %(when)s: %(count)s requests re-attributed.") % {
        "key": key.name,
        "team": team,
        "when": formats.date_format(move.starts_at.astimezone(dashboard_tz()), "DATETIME_FORMAT"),
        "count": move.records,
    }
