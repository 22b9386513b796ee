"""Keys & teams: usage per API key and per team for the period, and a key's name and team."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from toki_dashboard.forms import form_invalid, form_saved
from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, has_any_role, role_required
from usage import graphs, selectors
from usage.models import ApiKey
from usage.periods import PRESETS, Period, dashboard_tz
from usage.teams.forms import KeyForm, saved_message
from usage.teams.selectors import key_history
from usage.tenancy import current_account, current_account_or_none


def _team_from(request: HttpRequest) -> str | None:
    # NUL cannot be stored (PostgreSQL refuses it in text), so no team can be named with it.
    team = request.GET.get("team", "").replace("\x00", "").strip()
    return team[:100] or None


@role_required(Role.ENGINEER)
def keys(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, notice = Period.read(request.GET)
    team = _team_from(request)
    context = {
        "period": period,
        "presets": PRESETS,
        "account": account,
        "team": team,
        "no_team": selectors.NO_TEAM,
        "notices": [notice] if notice else [],
    }
    if account is not None:
        teams = selectors.usage_by_team(account=account, period=period)
        context |= {
            "key_rows": selectors.usage_by_key(account=account, period=period, team=team),
            "team_rows": teams,
            "team_names": selectors.team_names(account=account),
            "totals": selectors.totals(account=account, period=period),
            "team_chart": graphs.spend_by_team_chart(teams, account.currency),
            "period_query": urlencode(period.as_query()),
            "query": urlencode(period.as_query() | ({"team": team} if team else {})),
        }
    with timezone.override(dashboard_tz()):
        return render_page(request, "usage/keys.html", "usage/partials/keys_body.html", context)


@role_required(Role.ENGINEER, Role.ADMIN)
def key_edit(request: HttpRequest, pk: int) -> HttpResponse:
    account = current_account(request)
    key = get_object_or_404(ApiKey, pk=pk, account=account)
    back = request.POST.get("next") or request.GET.get("next") or ""
    if not back.startswith("?"):
        back = ""  # only a query string of the keys page, never another site
    may_move_the_past = has_any_role(request.user, Role.ADMIN)
    if request.method == "POST":
        form = KeyForm(request.POST, account=account, may_move_the_past=may_move_the_past)
        with timezone.override(dashboard_tz()):
            valid = form.is_valid()
        if valid:
            try:
                move = form.save(key, user=request.user)
            except ValidationError:
                pass  # the form carries the refusal
            else:
                messages.success(request, saved_message(key, move))
                return form_saved(request, reverse("usage:keys") + back)
    else:
        form = KeyForm(
            initial={"name": key.name, "team": key.team, "since": "now"},
            account=account,
            may_move_the_past=may_move_the_past,
        )
    context = {"form": form, "key": key, "next": back, "history": key_history(key)}
    with timezone.override(dashboard_tz()):
        if form.errors:
            return form_invalid(request, "usage/keys_edit.html", "usage/partials/key_edit_form.html", context)
        return render(request, "usage/keys_edit.html", context)
