"""Plans & wallet: purchases and their burn-down, the wallet ledger, provider sync and
reconciliation, and finance's forms. Thin: reads come from billing.selectors, writes
go through billing.services (which keep the audit trail). Every form posts to /plans/ itself
(a hidden `form` says which) and redirects when saved; refused, it comes back with its errors
in place (toki_dashboard.forms). The older per-form URLs still take the same posts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import selectors, services, tasks
from billing.audit import Actor
from billing.balances import account_balances, balance_freshness, expired_plans
from billing.forms import AdjustmentForm, FinanceForm, PurchaseForm, TopUpForm, VoidPurchaseForm
from billing.models import AuditEvent, PlanPurchase, SyncOutcome, SyncTrigger
from billing.paid import paid_for_tokens
from billing.services import BillingError
from toki_dashboard.forms import form_invalid, form_saved
from toki_dashboard.htmx import render_page, wants_fragment
from toki_dashboard.roles import Role, role_required
from usage.models import Account
from usage.periods import dashboard_tz
from usage.tenancy import current_account_or_none

LEDGER_PAGE_SIZE = 25
AUDIT_PAGE_SIZE = 15


def _account(request: HttpRequest) -> Account | None:
    return current_account_or_none(request)


def _tz_name() -> str:
    return settings.DASHBOARD_TIME_ZONE


CAUSE_LABELS = {
    "missing_records": "Missing records",
    "duplicate_records": "Records counted twice",
    "unpriced_records": "Unpriced records",
    "estimated_tokens": "Estimated tokens",
    "price_mismatch": "Price mismatch",
}


@dataclass(frozen=True)
class CauseRow:
    label: str
    message: str


OBJECT_LABELS: dict[str, str | Promise] = {
    "billing.planpurchase": gettext_lazy("Purchase"),
    "billing.walletentry": gettext_lazy("Wallet entry"),
    "billing.tokenplan": gettext_lazy("Catalogue plan"),
    "billing.balancesnapshot": gettext_lazy("Balance reading"),
    "billing.syncstate": gettext_lazy("Provider sync"),
}


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    what: str
    detail: str


def _audit_row(event: AuditEvent) -> AuditRow:
    after = event.after if isinstance(event.after, dict) else {}
    what = f"{OBJECT_LABELS.get(event.object_type, event.object_type)} #{event.object_id}"
    if after.get("void_reason"):
        detail = (
            _("%(name)s — voided: %(reason)s") % {"name": after.get("name", ""), "reason": after["void_reason"]}
        ).lstrip(" —")
    elif "amount" in after:
        amount = f"{Decimal(str(after['amount'])):,.2f} {after.get('currency', '')}".strip()
        detail = " · ".join(v for v in (amount, after.get("note")) if v)
    else:
        detail = str(after.get("name") or after.get("note") or "")
    return AuditRow(event, what, detail)


def _audit_filter(request: HttpRequest, account: Account) -> dict[str, Any]:
    """The audit trail's filters from the query (unknown values are ignored), and the query
    string that keeps them on its page links."""
    choices = selectors.audit_choices(account)
    actor = request.GET.get("audit_actor", "")
    action = request.GET.get("audit_action", "")
    actor = actor if actor in choices.actors else ""
    action = action if action in choices.actions else ""
    include_system = request.GET.get("audit_system") == "1"
    kept = {"audit_actor": actor, "audit_action": action, "audit_system": "1" if include_system else ""}
    return {
        "actor": actor,
        "action": action,
        "include_system": include_system,
        "choices": choices,
        "query": urlencode({name: value for name, value in kept.items() if value}),
    }


@dataclass(frozen=True)
class ExpiredRow:
    status: selectors.PlanStatus
    unused_value: Decimal | None  # what the tokens that expired unused were paid


def _plans_context(request: HttpRequest, account: Account, **forms: FinanceForm) -> dict[str, Any]:
    # Every balance and forecast figure comes from one read for one moment, the one the
    # card, the banner, the alert emails and /api/v1/balance show too.
    balances = account_balances(account)
    now = balances.at
    expired = [
        ExpiredRow(s, paid_for_tokens(s.tokens_expired, s.purchase) if s.tokens_expired is not None else None)
        for s in expired_plans(account, at=now)
    ]
    # The window each sync reconciles (and alerts on), so the page and the alert agree.
    hours = settings.BILLING_RECONCILIATION_HOURS
    reconciliation = selectors.reconcile(account, start=now - timedelta(hours=hours), end=now)
    ledger = Paginator(selectors.wallet_ledger(account), LEDGER_PAGE_SIZE).get_page(request.GET.get("page"))
    audit_filter = _audit_filter(request, account)
    audit = Paginator(
        selectors.audit_trail(
            account,
            actor=audit_filter["actor"],
            action=audit_filter["action"],
            include_system=audit_filter["include_system"],
        ),
        AUDIT_PAGE_SIZE,
    ).get_page(request.GET.get("audit_page"))
    return {
        "account": account,
        "tz_name": _tz_name(),
        "now": now,
        "balances": balances,
        "expired_rows": expired,
        "voided_purchases": PlanPurchase.objects.filter(account=account, voided_at__isnull=False)
        .select_related("voided_by")
        .order_by("-voided_at"),
        "provider_reported": selectors.latest_snapshot(account),
        "sync": balance_freshness(account, now=timezone.now()),
        "sync_runs": selectors.sync_history(account, limit=5),
        "sync_running": SyncOutcome.RUNNING,
        "reconciliation": reconciliation,
        "reconciliation_causes": [
            CauseRow(CAUSE_LABELS.get(c.code, c.code.replace("_", " ").capitalize()), c.message)
            for c in (reconciliation.causes if reconciliation else [])
        ],
        "reconciliation_hours": hours,
        "ledger": ledger,
        "ledger_months": selectors.ledger_by_month_and_day(account, list(ledger.object_list), dashboard_tz()),
        "ledger_zero_lines": selectors.zero_ledger_lines(account),
        "audit": audit,
        "audit_filter": audit_filter,
        "audit_rows": [_audit_row(event) for event in audit.object_list],
        "purchase_form": forms.get("purchase_form") or PurchaseForm(account=account),
        "top_up_form": forms.get("top_up_form") or TopUpForm(account=account),
        "adjustment_form": forms.get("adjustment_form") or AdjustmentForm(account=account),
        "void_error": forms.get("void_error"),
        "void_form": forms.get("void_form"),
        "void_failed_id": forms.get("void_failed_id"),
    }


@role_required(Role.FINANCE)
@require_http_methods(["GET", "POST"])
def plans(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        handler = POSTS.get(request.POST.get("form", ""))
        if handler is None:
            messages.error(request, _("That form is not one of this page's; nothing was recorded."))
            return form_saved(request, reverse("billing:plans"))
        return handler(request)
    account = _account(request)
    if account is None:
        return render(request, "billing/plans.html", {"account": None})
    context = _plans_context(request, account)
    htmx = getattr(request, "htmx", None)
    if wants_fragment(request) and htmx is not None and htmx.target == "wallet-ledger":
        return render_page(request, "billing/plans.html", "billing/partials/plans_ledger.html", context)
    return render(request, "billing/plans.html", context)


FORM_PARTIALS = {
    "purchase_form": "billing/partials/plans_form_purchase.html",
    "top_up_form": "billing/partials/plans_form_top_up.html",
    "adjustment_form": "billing/partials/plans_form_adjustment.html",
}


def _invalid(request: HttpRequest, account: Account, **forms: Any) -> HttpResponse:
    """The page again with the submitted form and its errors (400); for htmx the form alone (422)."""
    if wants_fragment(request):
        name = next(iter(forms))
        context = {"account": account, "tz_name": _tz_name(), **forms}
        purchase = forms.get("void_purchase")
        fragment = "billing/partials/plans_void.html" if purchase is not None else FORM_PARTIALS[name]
        return form_invalid(request, "billing/plans.html", fragment, context | {"purchase": purchase})
    return form_invalid(request, "billing/plans.html", "", _plans_context(request, account, **forms))


def _no_account(request: HttpRequest) -> HttpResponse:
    messages.error(request, _("There is no TOKI account to record this against yet."))
    return redirect("billing:plans")


@role_required(Role.FINANCE)
@require_POST
def record_purchase(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if account is None:
        return _no_account(request)
    form = PurchaseForm(request.POST, account=account)
    if form.is_valid():
        try:
            purchase, created = services.record_purchase(account, form.purchase_data(), Actor.of_user(request.user))
        except BillingError as exc:
            form.add_error(None, str(exc))
        else:
            if created:
                messages.success(
                    request,
                    _("Recorded the purchase %(name)s (%(tokens)s tokens).")
                    % {"name": purchase.name, "tokens": f"{purchase.tokens:,}"},
                )
            else:
                messages.info(
                    request,
                    _("The purchase %(name)s was already recorded; nothing was added.") % {"name": purchase.name},
                )
            return form_saved(request, reverse("billing:plans"))
    return _invalid(request, account, purchase_form=form)


def _record_entry(request: HttpRequest, form_class: type[TopUpForm | AdjustmentForm], form_name: str) -> HttpResponse:
    account = _account(request)
    if account is None:
        return _no_account(request)
    form = form_class(request.POST, account=account)
    if form.is_valid():
        try:
            entry, created = services.record_wallet_entry(account, form.entry_data(), Actor.of_user(request.user))
        except BillingError as exc:
            form.add_error(None, str(exc))
        else:
            what = entry.get_kind_display().lower()
            if created:
                messages.success(
                    request,
                    _("Recorded the %(what)s of %(amount)s %(currency)s.")
                    % {"what": what, "amount": f"{entry.amount:,.2f}", "currency": entry.currency},
                )
            else:
                messages.info(request, _("This %(what)s was already recorded; nothing was added.") % {"what": what})
            return form_saved(request, reverse("billing:plans"))
    return _invalid(request, account, **{form_name: form})


@role_required(Role.FINANCE)
@require_POST
def record_top_up(request: HttpRequest) -> HttpResponse:
    return _record_entry(request, TopUpForm, "top_up_form")


@role_required(Role.FINANCE)
@require_POST
def record_adjustment(request: HttpRequest) -> HttpResponse:
    return _record_entry(request, AdjustmentForm, "adjustment_form")


@role_required(Role.FINANCE)
@require_POST
def void_purchase(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if account is None:
        return _no_account(request)
    form = VoidPurchaseForm(request.POST, account=account)
    if form.is_valid():
        try:
            purchase = services.void_purchase(
                form.cleaned_data["purchase"], Actor.of_user(request.user), form.cleaned_data["reason"]
            )
        except BillingError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(
                request, _("Voided the purchase %(name)s (#%(id)s).") % {"name": purchase.name, "id": purchase.pk}
            )
            return form_saved(request, reverse("billing:plans"))
    problems = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in form.errors.items())
    chosen = _int(request.POST.get("purchase"))
    shown = (
        PlanPurchase.objects.filter(account=account, voided_at__isnull=True, pk=chosen).first()
        if chosen is not None
        else None
    )
    if shown is None:  # not a purchase the page lists (voided meanwhile, another account's): say so above
        if wants_fragment(request):
            messages.error(request, _("The purchase was not voided — %(problems)s") % {"problems": problems})
            return form_saved(request, reverse("billing:plans"))
        return _invalid(
            request, account, void_error=_("The purchase was not voided — %(problems)s") % {"problems": problems}
        )
    return _invalid(request, account, void_form=form, void_failed_id=shown.pk, void_purchase=shown)


def _int(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


@role_required(Role.FINANCE)
@require_POST
def sync_now(request: HttpRequest) -> HttpResponse:
    account = _account(request)
    if account is None:
        return _no_account(request)
    account_id = account.pk
    transaction.on_commit(lambda: tasks.sync_account.delay(account_id, SyncTrigger.MANUAL))
    messages.success(
        request, _("A sync of %(name)s was requested; it runs in the background.") % {"name": account.name}
    )
    return redirect("billing:plans")


# What a post to /plans/ does, by its hidden `form` field.
POSTS = {
    "purchase": record_purchase,
    "top_up": record_top_up,
    "adjustment": record_adjustment,
    "void": void_purchase,
}


@role_required(Role.FINANCE, Role.ENGINEER)
@require_GET
def balance_card(request: HttpRequest) -> HttpResponse:
    """The Overview's balance card: an htmx fragment, or a small page without JavaScript."""
    account = _account(request)
    context: dict[str, Any] = {"account": account, "tz_name": _tz_name()}
    if account is not None:
        now = timezone.now()
        context |= {
            "now": now,
            "balances": account_balances(account),
            "sync": balance_freshness(account, now=now),
        }
    return render_page(request, "billing/balance_card.html", "billing/partials/balance_card.html", context)
