"""Settings (admin only): API tokens, the price book, and the TOKI accounts."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from toki_dashboard.forms import form_invalid, form_saved
from toki_dashboard.htmx import wants_fragment
from toki_dashboard.roles import Role, role_required
from usage import deadletters, selectors
from usage.catalogue import selectors as catalogue
from usage.forms import ApiTokenForm, PriceForm
from usage.models import Account, ApiToken, ModelPrice, TokenScope
from usage.periods import Period, dashboard_tz
from usage.services import revoke_api_token
from usage.tenancy import current_account_or_none

PRICES_PER_PAGE = 100


def _text(value: str | None) -> str:
    """A query value fit for a lookup: no NUL (PostgreSQL refuses it in text), at most a model name long."""
    return (value or "").replace("\x00", "").strip()[:200]


def _page(
    request: HttpRequest, template: str, context: dict[str, Any], *, status: int = 200, form_partial: str = ""
) -> HttpResponse:
    """Settings pages show times in the dashboard's time zone and are never cached; each counts
    the records set aside as dead letters. With `form_partial`, a refused form: the page with its
    errors, or for htmx the form alone (toki_dashboard.forms)."""
    context = context | {"dead_letters": deadletters.open_count()}
    with timezone.override(dashboard_tz()):
        if form_partial:
            response = form_invalid(request, template, form_partial, context)
        else:
            response = render(request, template, context, status=status)
    add_never_cache_headers(response)
    return response


def _token_context(request: HttpRequest, form: ApiTokenForm) -> dict[str, Any]:
    tokens = ApiToken.objects.select_related("account", "created_by").order_by("revoked_at", "account__name", "name")
    return {"section": "tokens", "form": form, "tokens": tokens, "scope_labels": dict(TokenScope.choices)}


@role_required(Role.ADMIN)
def api_tokens(request: HttpRequest) -> HttpResponse:
    """GET: the tokens and the form for a new one; POST: create one (the form posts here)."""
    if request.method == "POST":
        return api_token_create(request)
    account = current_account_or_none(request)
    form = ApiTokenForm(initial={"account": account, "scopes": [TokenScope.INGEST]})
    return _page(request, "usage/settings_tokens.html", _token_context(request, form))


@require_POST
@role_required(Role.ADMIN)
def api_token_create(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        context = _token_context(request, form)
        return _page(request, "usage/settings_tokens.html", context, form_partial="usage/partials/token_form.html")
    token, plaintext = form.save(created_by=request.user)
    # Shown in this answer only: never stored, logged, put in a URL or the session.
    context = {"section": "tokens", "token": token, "plaintext": plaintext, "scope_labels": dict(TokenScope.choices)}
    response = _page(request, "usage/settings_token_created.html", context, status=201)
    if wants_fragment(request):  # htmx posted the form: the whole content becomes the token's page
        response["HX-Retarget"] = "#main"
        response["HX-Reswap"] = "outerHTML"
        response["HX-Reselect"] = "#main"
    return response


@role_required(Role.ADMIN)
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken.objects.select_related("account"), pk=pk)
    if request.method == "POST":
        if token.is_active:
            revoke_api_token(token)
            messages.success(request, _("Revoked “%(name)s”: it no longer authenticates.") % {"name": token.name})
        return redirect("usage:settings")
    return _page(request, "usage/settings_token_revoke.html", {"section": "tokens", "token": token})


def _price_context(request: HttpRequest, form: PriceForm) -> dict[str, Any]:
    account = current_account_or_none(request)
    search = _text(request.GET.get("q") or request.GET.get("model"))
    prices = ModelPrice.objects.select_related("account").order_by("model_pattern", "account__name", "-effective_from")
    if search:
        prices = prices.filter(model_pattern__icontains=search)
    page = Paginator(prices, PRICES_PER_PAGE).get_page(request.GET.get("page"))
    unpriced = selectors.unpriced_models(account=account, period=Period.from_query({})) if account else []
    listed_unpriced = catalogue.unpriced_listed(account) if account else []
    return {
        "section": "prices",
        "form": form,
        "page": page,
        "search": search,
        "now": timezone.now(),
        "unpriced": unpriced,
        "listed_unpriced": [name for name in listed_unpriced if name not in unpriced],
        "search_query": urlencode({"q": search}) if search else "",
        "time_zone_name": dashboard_tz().key,
    }


@role_required(Role.ADMIN)
def prices(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    if request.method == "POST":
        form = PriceForm(request.POST)
        with timezone.override(dashboard_tz()):  # a datetime-local means the dashboard's time zone
            valid = form.is_valid()
        if valid:
            price = form.save()
            messages.success(
                request,
                _("Added a price for %(model)s. The requests it applies to are being re-costed in the background.")
                % {"model": price.model_pattern},
            )
            return form_saved(request, reverse("usage:prices") + "?" + urlencode({"q": price.model_pattern}))
        context = _price_context(request, form)
        return _page(request, "usage/settings_prices.html", context, form_partial="usage/partials/prices_form.html")
    model = _text(request.GET.get("model"))
    initial: dict[str, Any] = {
        "model_pattern": model,
        "account": account,
        "currency": account.currency if account else "",
    }
    if model and ModelPrice.objects.filter(model_pattern=model).exists():
        initial["effective_from"] = timezone.now().replace(second=0, microsecond=0)  # a change: from now on
    form = PriceForm(initial=initial)
    return _page(request, "usage/settings_prices.html", _price_context(request, form))


@role_required(Role.ADMIN)
def accounts(request: HttpRequest) -> HttpResponse:
    rows = Account.objects.order_by("name").only(
        "name", "slug", "currency", "provider", "base_url", "credentials_encrypted", "created_at"
    )
    return _page(request, "usage/settings_accounts.html", {"section": "accounts", "accounts": rows})
