"""Models: a sortable table per model for the period, and one model's drill-down in lazy cards."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext, gettext_lazy

from toki_dashboard.htmx import render_page, wants_fragment
from toki_dashboard.roles import Role, role_required
from usage import graphs, selectors
from usage.catalogue import selectors as catalogue
from usage.estimation.calibration import estimator_quality
from usage.exchange import rates_applied
from usage.models import HourlyUsage
from usage.periods import PRESETS, Period
from usage.selectors import requestlog
from usage.tenancy import current_account, current_account_or_none
from usage.views.requests import PERIOD_FIELDS, keep, with_query

TABLE_TARGET = "models-table"
# Numbers read best largest first; names alphabetically.
ASCENDING_FIRST = frozenset({"model"})


def _sort_columns(url: str, request: HttpRequest, sort: str) -> list[dict[str, Any]]:
    current = sort.removeprefix("-")
    columns = []
    for field, label in selectors.MODEL_SORTS.items():
        if field == current:
            next_sort = field if sort.startswith("-") else f"-{field}"
            state = "descending" if sort.startswith("-") else "ascending"
        else:
            next_sort = field if field in ASCENDING_FIRST else f"-{field}"
            state = ""
        columns.append(
            {
                "field": field,
                "label": label,
                "url": with_query(url, request.GET, sort=next_sort),
                "aria_sort": state,
                "numeric": field != "model",
            }
        )
    return columns


@role_required(Role.ENGINEER)
def models_page(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    period, period_warning = Period.read(request.GET)
    search = request.GET.get("q", "").strip()[:200]
    sort = request.GET.get("sort") or selectors.DEFAULT_MODEL_SORT
    notices = [n for n in (period_warning, selectors.raw_detail_notice(period.start, period.end)) if n]
    if sort.removeprefix("-") not in selectors.MODEL_SORTS:
        notices.append(gettext("Unknown sort “%(sort)s”: sorted by usage value, highest first.") % {"sort": sort[:40]})
        sort = selectors.DEFAULT_MODEL_SORT
    url = reverse("usage:models")
    context: dict[str, Any] = {"period": period, "presets": PRESETS, "account": account, "notices": notices}
    if account is not None:
        context |= {
            "rows": selectors.model_rows(account=account, period=period, search=search, sort=sort),
            "totals": selectors.totals(account=account, period=period),
            "rates_applied": rates_applied(account, period.start, period.end),
            "all_models": catalogue.model_choices(account, period),
            "unlisted": catalogue.unlisted_in_use(account, period),
            "search": search,
            "sort": sort,
            "columns": _sort_columns(url, request, sort),
            "picker_url": url,
            "picker_target": "#models-body",
            "picker_keep": keep(request.GET, "q", "sort"),
            "filter_keep": [*keep(request.GET, *PERIOD_FIELDS), ("sort", sort)],
            "period_query": with_query("", request.GET, q=None, sort=None),
        }
    table_only = wants_fragment(request) and request.htmx.target == TABLE_TARGET  # type: ignore[attr-defined]  # django-htmx's middleware sets request.htmx
    fragment = "usage/partials/models_table.html" if table_only else "usage/partials/models_body.html"
    context["oob"] = table_only
    return render_page(request, "usage/models.html", fragment, context)


CARDS: dict[str, str | Promise] = {
    "usage": gettext_lazy("Tokens and usage value"),
    "latency": gettext_lazy("Latency"),
    "errors": gettext_lazy("Errors by cause"),
    "top": gettext_lazy("Top keys and teams"),
    "recent": gettext_lazy("Recent requests"),
    "estimator": gettext_lazy("Token estimator"),
    "catalogue": gettext_lazy("Catalogue and prices"),
}


def _model_context(request: HttpRequest, model: str) -> dict[str, Any]:
    account = current_account(request)
    if not (HourlyUsage.objects.filter(account=account, model=model).exists() or catalogue.is_known(account, model)):
        raise Http404("No usage was ever recorded for this model, and the provider never listed it.")
    period, period_warning = Period.read(request.GET)
    period_params = QueryDict(mutable=True)
    for name, value in keep(request.GET, *PERIOD_FIELDS):
        period_params[name] = value
    period_query = with_query("", period_params)
    return {
        "account": account,
        "model": model,
        "period": period,
        "presets": PRESETS,
        "notices": [n for n in (period_warning, selectors.raw_detail_notice(period.start, period.end)) if n],
        "period_query": period_query,
        "period_params": period_params,
        "requests_url": with_query(reverse("usage:requests"), period_params, model=model),
        "picker_url": reverse("usage:model_detail", args=[model]),
        "picker_target": "#model-body",
        "picker_keep": [],
        "cards": [
            {
                "name": name,
                "title": title,
                "url": reverse("usage:model_card", args=[model, name]) + period_query,
                "template": f"usage/partials/model_card_{name}.html",
            }
            for name, title in CARDS.items()
        ],
    }


@role_required(Role.ENGINEER)
def model_detail(request: HttpRequest, model: str) -> HttpResponse:
    context = _model_context(request, model)
    context["totals"] = selectors.model_totals(account=context["account"], period=context["period"], model=model)
    context["catalogue"] = catalogue.model_catalogue(context["account"], model)
    return render_page(request, "usage/model_detail.html", "usage/partials/model_body.html", context)


@role_required(Role.ENGINEER)
def model_card(request: HttpRequest, model: str, card: str) -> HttpResponse:
    """One card of the model page: htmx loads each on its own; without JavaScript it is a page."""
    if card not in CARDS:
        raise Http404("No such card.")
    context = _model_context(request, model)
    context |= _card_data(card, context)
    context["only_card"] = card
    context["totals"] = selectors.model_totals(account=context["account"], period=context["period"], model=model)
    return render_page(request, "usage/model_detail.html", f"usage/partials/model_card_{card}.html", context)


def _card_data(card: str, context: dict[str, Any]) -> dict[str, Any]:
    account, period, model = context["account"], context["period"], context["model"]
    if card == "usage":
        days = selectors.model_usage_per_day(account=account, period=period, model=model)
        return {
            "days": days,
            "tokens_chart": graphs.model_tokens_chart(days),
            "cost_chart": graphs.model_cost_chart(days, account.currency),
        }
    if card == "latency":
        return {"latency": selectors.model_latency(account=account, period=period, model=model)}
    if card == "errors":
        causes = selectors.errors_by_cause(account=account, period=period, model=model)
        requests_url = reverse("usage:requests")
        params = context["period_params"]
        return {
            "causes": [
                (cause, with_query(requests_url, params, model=model, error_cause=cause.cause)) for cause in causes
            ]
        }
    if card == "top":
        return {
            "top_keys": selectors.top_by_for_model(
                account=account, period=period, model=model, dimension="api_key__name"
            ),
            "top_teams": selectors.top_by_for_model(account=account, period=period, model=model, dimension="team"),
        }
    if card == "recent":
        filters = requestlog.RecordFilters(start=period.start, end=period.end, model=model)
        rows, _ = requestlog.page(account, filters, limit=10)
        return {"recent": rows}
    if card == "catalogue":
        return {"catalogue": catalogue.model_catalogue(account, model)}
    totals = selectors.model_totals(account=account, period=period, model=model)
    return {"quality": estimator_quality(model), "model_totals": totals}
