"""The Budgets page (finance and admin): each budget's spend so far, progress, forecast to the
end of its period and past periods; forms to add, change and delete budgets."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from billing.audit import Actor
from billing.budgets import services, spend, text
from billing.budgets.services import BudgetData
from billing.models import Budget, BudgetMeasure, BudgetPeriod, BudgetScope, parse_tiers
from billing.services import BillingError
from toki_dashboard.forms import ErrorsInPlace, form_invalid, form_saved
from toki_dashboard.roles import Role, role_required
from usage import selectors as usage_selectors
from usage.tenancy import current_account, current_account_or_none

INPUT = {"class": "input"}


class BudgetForm(ErrorsInPlace, forms.Form):
    name = forms.CharField(
        max_length=200,
        label=gettext_lazy("Name"),
        widget=forms.TextInput(attrs=INPUT | {"placeholder": gettext_lazy("e.g. Search team")}),
    )
    scope = forms.ChoiceField(
        choices=BudgetScope.choices, widget=forms.Select(attrs=INPUT), label=gettext_lazy("Applies to")
    )
    target = forms.CharField(
        max_length=200,
        required=False,
        label=gettext_lazy("Team, key or model"),
        help_text=gettext_lazy(
            "The team's name, the key's name, or a model name or glob such as gpt-4o*; empty for the account."
        ),
        widget=forms.TextInput(attrs=INPUT | {"list": "budget-targets", "autocomplete": "off"}),
    )
    measure = forms.ChoiceField(
        choices=BudgetMeasure.choices, widget=forms.Select(attrs=INPUT), label=gettext_lazy("Counts")
    )
    amount = forms.DecimalField(
        max_digits=38,
        decimal_places=10,
        label=gettext_lazy("Amount"),
        help_text=gettext_lazy("In the account's currency, or a number of tokens."),
        widget=forms.NumberInput(attrs=INPUT | {"step": "any", "min": "0"}),
    )
    period = forms.ChoiceField(
        choices=BudgetPeriod.choices,
        initial=BudgetPeriod.MONTH,
        label=gettext_lazy("Period"),
        widget=forms.Select(attrs=INPUT),
    )
    starts_on = forms.DateField(
        required=False,
        label=gettext_lazy("From"),
        widget=forms.DateInput(attrs=INPUT | {"type": "date"}),
        help_text=gettext_lazy("Fixed range only."),
    )
    ends_on = forms.DateField(
        required=False,
        label=gettext_lazy("To"),
        widget=forms.DateInput(attrs=INPUT | {"type": "date"}),
        help_text=gettext_lazy("Inclusive."),
    )
    thresholds = forms.CharField(
        initial="50, 80, 100",
        label=gettext_lazy("Thresholds"),
        help_text=gettext_lazy("Percent of the amount at which to notify, e.g. 50, 80, 100."),
        widget=forms.TextInput(attrs=INPUT),
    )
    enforce = forms.BooleanField(
        required=False,
        label=gettext_lazy("Enforce at the proxy"),
        help_text=gettext_lazy(
            "Once exhausted, the logging proxy refuses its calls (HTTP 429) until the period resets."
        ),
    )

    def clean_thresholds(self) -> list[Decimal]:
        try:
            return parse_tiers(self.cleaned_data["thresholds"])
        except ValidationError as exc:
            raise ValidationError(_("Thresholds: %(error)s") % {"error": exc.messages[0]}) from None

    def data_class(self) -> BudgetData:
        data = self.cleaned_data
        return BudgetData(
            name=data["name"],
            amount=data["amount"],
            scope=data["scope"],
            target=data["target"] or "",
            measure=data["measure"],
            period=data["period"],
            starts_on=data["starts_on"],
            ends_on=data["ends_on"],
            thresholds=data["thresholds"],
            enforce=data["enforce"],
        )

    @classmethod
    def of(cls, budget: Budget) -> BudgetForm:
        return cls(
            initial={
                "name": budget.name,
                "scope": budget.scope,
                "target": budget.target,
                "measure": budget.measure,
                "amount": budget.amount.normalize(),
                "period": budget.period,
                "starts_on": budget.starts_on,
                "ends_on": budget.ends_on,
                "thresholds": ", ".join(f"{t.normalize():f}" for t in budget.threshold_values),
                "enforce": budget.enforce,
            }
        )


def _rows(account: Any) -> list[dict[str, Any]]:
    rows = []
    for budget in Budget.objects.filter(account=account).select_related("account").order_by("name"):
        found = spend.status(budget)
        rows.append(
            {
                "budget": budget,
                "status": found,
                "spent": text.quantity(budget, found.spent),
                "amount": text.quantity(budget, budget.amount),
                "forecast": text.forecast(found),
                "projected": text.quantity(budget, found.projected) if found.projected is not None else None,
                "resets": text.resets(found),
                "scope": text.scope_label(budget),
                "names_nothing": spend.names_nothing(budget),
                "history": [(p, text.quantity(budget, p.spent)) for p in found.history],
            }
        )
    return rows


def _page(request: HttpRequest, *, form: BudgetForm | None = None, editing: Budget | None = None) -> HttpResponse:
    account = current_account_or_none(request)
    context: dict[str, Any] = {"account": account, "editing": editing, "tz_name": settings.DASHBOARD_TIME_ZONE}
    if account is not None:
        context |= {
            "rows": _rows(account),
            "targets": usage_selectors.budget_targets(account=account),
            "form": form or (BudgetForm.of(editing) if editing else BudgetForm()),
        }
    if form is not None and form.errors:
        return form_invalid(request, "billing/budgets.html", "billing/partials/budget_form.html", context)
    return render(request, "billing/budgets.html", context)


def _save(request: HttpRequest, form: BudgetForm, budget: Budget | None) -> HttpResponse | None:
    """Save a valid form; None when the service refused it (its message is on the form)."""
    account = current_account(request)
    actor = Actor.of_user(request.user)
    try:
        if budget is None:
            budget, _created = services.create_budget(account, form.data_class(), actor)
            messages.success(request, _("Budget “%(name)s” added.") % {"name": budget.name})
        else:
            services.update_budget(budget, form.data_class(), actor)
            messages.success(request, _("Budget “%(name)s” saved.") % {"name": budget.name})
    except BillingError as exc:
        # The service's messages are English ("field: what is wrong"), marked for the catalogue:
        # the page shows them in the reader's language (the whole sentence is the msgid).
        text = _(str(exc))
        field, sep, message = str(exc).partition(": ")
        if sep and text != str(exc):
            message = text.partition(": ")[2] or text
        form.add_error(field if field in form.fields else None, message or text)
        return None
    return form_saved(request, reverse("billing:budgets"))


@role_required(Role.FINANCE)
def budgets(request: HttpRequest) -> HttpResponse:
    """GET: every budget with its progress; POST: add one."""
    if request.method == "POST" and current_account_or_none(request) is not None:
        form = BudgetForm(request.POST)
        if form.is_valid() and (saved := _save(request, form, None)) is not None:
            return saved
        return _page(request, form=form)
    return _page(request)


@role_required(Role.FINANCE)
def edit_budget(request: HttpRequest, pk: int) -> HttpResponse:
    budget = get_object_or_404(Budget, pk=pk, account=current_account(request))
    if request.method == "POST":
        form = BudgetForm(request.POST)
        if form.is_valid() and (saved := _save(request, form, budget)) is not None:
            return saved
        return _page(request, form=form, editing=budget)
    return _page(request, editing=budget)


@require_POST
@role_required(Role.FINANCE)
def delete_budget(request: HttpRequest, pk: int) -> HttpResponse:
    budget = Budget.objects.filter(pk=pk, account=current_account(request)).first()
    if budget is None:  # deleted already (a second click, another tab): nothing left to do
        messages.info(request, _("That budget was deleted already."))
        return redirect(reverse("billing:budgets"))
    services.delete_budget(budget, Actor.of_user(request.user))
    messages.success(request, _("Budget “%(name)s” deleted.") % {"name": budget.name})
    return redirect(reverse("billing:budgets"))
