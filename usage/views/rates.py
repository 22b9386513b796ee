"""Exchange rates (finance): the rates that value usage in an account's currency when a
price exists only in another, with who entered each, and a form to enter a new one."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext

from toki_dashboard.forms import form_invalid, form_saved
from toki_dashboard.roles import Role, role_required
from usage.exchange import rate_history
from usage.forms import ExchangeRateForm
from usage.periods import dashboard_tz
from usage.tenancy import current_account_or_none


def _page(request: HttpRequest, form: ExchangeRateForm) -> HttpResponse:
    """The page, or after a refused post the form with its errors (toki_dashboard.forms)."""
    context: dict[str, Any] = {"form": form, "history": rate_history(), "time_zone_name": dashboard_tz().key}
    with timezone.override(dashboard_tz()):
        if form.errors:
            response = form_invalid(request, "usage/rates.html", "usage/partials/rates_form.html", context)
        else:
            response = render(request, "usage/rates.html", context)
    add_never_cache_headers(response)
    return response


@role_required(Role.FINANCE)
def exchange_rates(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    if request.method == "POST":
        form = ExchangeRateForm(request.POST)
        with timezone.override(dashboard_tz()):  # a datetime-local means the dashboard's time zone
            valid = form.is_valid()
        if not valid:
            return _page(request, form)
        entry = form.save(entered_by=request.user)
        messages.success(
            request,
            gettext(
                "Entered 1 %(source)s = %(rate)s %(target)s. "
                "%(target)s usage priced in %(source)s is being re-valued in the background."
            )
            % {"source": entry.from_currency, "rate": f"{entry.rate.normalize():f}", "target": entry.to_currency},
        )
        return form_saved(request, reverse("usage:exchange_rates"))
    currency = account.currency if account else "CNY"
    initial = {
        "from_currency": "USD" if currency != "USD" else "",
        "to_currency": currency,
        "effective_from": timezone.now().astimezone(dashboard_tz()).replace(second=0, microsecond=0),
    }
    return _page(request, ExchangeRateForm(initial=initial))
