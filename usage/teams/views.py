"""Teams: every team of the account with its keys; admins create, rename and merge them
(engineers and finance read). A key is moved between teams from its edit page (Keys & teams)."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext

from toki_dashboard.forms import form_saved
from toki_dashboard.roles import Role, RoleRequired, has_any_role, role_required
from usage.models import Account
from usage.periods import dashboard_tz
from usage.teams import selectors, services
from usage.teams.forms import MergeForm, TeamNameForm
from usage.teams.models import Team
from usage.teams.resolve import normalised
from usage.tenancy import current_account, current_account_or_none


def _page(request: HttpRequest, *, create: TeamNameForm | None = None, failed: Any = None) -> HttpResponse:
    """The page; after a refused post (400) with that form and its errors in place."""
    account = current_account_or_none(request)
    context: dict[str, Any] = {
        "account": account,
        "can_manage": has_any_role(request.user, Role.ADMIN),
        "create_form": create or TeamNameForm(),
        "failed": failed,  # ((action, team id), form) of a refused rename or merge
        "rows": [],
    }
    if account is not None:
        rows = selectors.teams_with_keys(account)
        for row in rows:
            if row.team is not None:
                row.rename_form = (  # type: ignore[attr-defined]  # the page's forms ride on the row
                    failed[1] if failed and failed[0] == ("rename", row.team.pk) else
                    TeamNameForm(initial={"name": row.team.name}, prefix=f"rename-{row.team.pk}")
                )  # fmt: skip
                row.merge_form = (  # type: ignore[attr-defined]
                    failed[1] if failed and failed[0] == ("merge", row.team.pk) else
                    MergeForm(team=row.team, prefix=f"merge-{row.team.pk}")
                )  # fmt: skip
        context["rows"] = rows
        context["team_count"] = sum(1 for row in rows if row.team is not None)
        context["relabelling"] = selectors.relabel_progress(account)
    status = 400 if (create and create.errors) or failed else 200
    with timezone.override(dashboard_tz()):
        return render(request, "usage/teams.html", context, status=status)


@role_required(Role.FINANCE, Role.ENGINEER)
def teams(request: HttpRequest) -> HttpResponse:
    """The page; its forms post to it (admins only), named by their `form` field."""
    if request.method != "POST":
        return _page(request)
    if not has_any_role(request.user, Role.ADMIN):
        raise RoleRequired(frozenset({Role.ADMIN}))
    account = current_account(request)
    action = request.POST.get("form", "")
    if action == "create":
        return _create(request, account)
    team = get_object_or_404(Team, pk=_int(request.POST.get("team")), account=account)
    if action == "rename":
        return _rename(request, team)
    if action == "merge":
        return _merge(request, team)
    return HttpResponseBadRequest(gettext("Unknown form."))


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def _create(request: HttpRequest, account: Account) -> HttpResponse:
    form = TeamNameForm(request.POST)
    if form.is_valid():
        try:
            team = services.create_team(account, form.cleaned_data["name"], user=request.user)
        except ValidationError as error:
            form.add_error("name", error)
        else:
            messages.success(request, gettext("Created team “%(name)s”.") % {"name": team.name})
            return form_saved(request, reverse("usage:teams"))
    return _page(request, create=form)


def _rename(request: HttpRequest, team: Team) -> HttpResponse:
    form = TeamNameForm(request.POST, prefix=f"rename-{team.pk}")
    if form.is_valid():
        old = team.name
        try:
            renamed = services.rename_team(team, form.cleaned_data["name"], user=request.user)
        except ValidationError as error:
            form.add_error("name", error)
        else:
            new = normalised(form.cleaned_data["name"])
            if renamed.run is not None:
                text = gettext("Renamed “%(old)s” to “%(new)s”: its %(count)s requests are being relabelled.") % {
                    "old": old,
                    "new": new,
                    "count": renamed.run.total,
                }
            else:
                text = gettext("Renamed “%(old)s” to “%(new)s”: %(count)s requests relabelled.") % {
                    "old": old,
                    "new": new,
                    "count": renamed.records,
                }
            messages.success(request, text)
            return form_saved(request, reverse("usage:teams"))
    return _page(request, failed=(("rename", team.pk), form))


def _merge(request: HttpRequest, team: Team) -> HttpResponse:
    form = MergeForm(request.POST, team=team, prefix=f"merge-{team.pk}")
    if form.is_valid():
        into = form.cleaned_data["into"]
        moved = services.merge_teams(team, into, user=request.user)
        messages.success(
            request,
            gettext("Merged “%(old)s” into “%(new)s”: %(count)s requests relabelled.")
            % {"old": team.name, "new": into.name, "count": moved},
        )
        return form_saved(request, reverse("usage:teams"))
    return _page(request, failed=(("merge", team.pk), form))
