"""The model catalogue page: what the provider lists, with context length, price, first and
last seen, removals, and each model's usage in the period; "Sync models now" posts to billing."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import parameters
from usage.catalogue import selectors
from usage.periods import PRESETS, Period
from usage.selectors import parameters as selectors_parameters
from usage.tenancy import current_account_or_none
from usage.views.requests import keep, with_query


@role_required(Role.ENGINEER)
def catalogue(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, period_warning = Period.read(request.GET)
    context: dict[str, Any] = {
        "account": account,
        "period": period,
        "presets": PRESETS,
        "notices": [period_warning] if period_warning else [],
        "picker_url": reverse("usage:catalogue"),
        "picker_target": "#catalogue-body",
        "picker_keep": keep(request.GET, "account"),
        "period_query": with_query("", request.GET),
    }
    if account is not None:
        now = timezone.now()
        rows = selectors.catalogue_rows(account, period, now=now)
        context |= {
            "now": now,
            "status": selectors.catalogue_status(account, now=now),
            "rows": rows,
            "flagged": [row for row in rows if row.flagged],
            "listed_count": sum(1 for row in rows if row.state == selectors.State.LISTED),
            "runs": selectors.recent_runs(account),
            "capabilities": sorted(selectors_parameters.capabilities_seen(account=account).items()),
            "capability_labels": [label for _, label in parameters.CAPABILITIES.values()],
        }
    return render_page(request, "usage/catalogue.html", "usage/partials/catalogue_body.html", context)
