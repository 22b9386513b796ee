"""Errors: failed requests of the period by cause (usage.error_causes), each with its remedy."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse

from toki_dashboard.htmx import render_page
from toki_dashboard.roles import Role, role_required
from usage import graphs, selectors
from usage.error_causes import REMEDIES
from usage.models import ErrorCause
from usage.periods import PRESETS, Period
from usage.selectors import parameters as selectors_parameters
from usage.tenancy import current_account_or_none
from usage.views.requests import PERIOD_FIELDS, keep, with_query


@role_required(Role.ENGINEER)
def errors_page(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, period_warning = Period.read(request.GET)
    context: dict[str, Any] = {
        "period": period,
        "presets": PRESETS,
        "account": account,
        "notices": [n for n in (period_warning, selectors.raw_detail_notice(period.start, period.end)) if n],
        "picker_url": reverse("usage:errors"),
        "picker_target": "#errors-body",
        "picker_keep": [],
    }
    if account is not None:
        period_params = QueryDict(mutable=True)
        for name, value in keep(request.GET, *PERIOD_FIELDS):
            period_params[name] = value
        requests_url = reverse("usage:requests")
        causes = selectors.errors_by_cause(account=account, period=period)
        labels = dict(ErrorCause.choices)
        context |= {
            "totals": selectors.totals(account=account, period=period),
            "causes": [(c, with_query(requests_url, period_params, error_cause=c.cause)) for c in causes],
            "all_failed_url": with_query(requests_url, period_params, status="failed"),
            "chart": graphs.errors_per_day_chart(selectors.errors_per_day(account=account, period=period), labels)
            if causes
            else None,
            "parameter_findings": selectors_parameters.unsupported_parameter_findings(account=account, period=period),
            "reference": [(labels[cause], REMEDIES[cause]) for cause in REMEDIES],
        }
    return render_page(request, "usage/errors.html", "usage/partials/errors_body.html", context)
