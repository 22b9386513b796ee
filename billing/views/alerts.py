"""The Alerts page (admin): rules, a test email per rule, episodes and the sent-mail log."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from billing import alerts
from billing.models import AlertEmail, AlertEmailStatus, AlertEpisode, AlertKind, AlertRule
from toki_dashboard.roles import Role, role_required
from usage.models import ErrorCause
from usage.tenancy import current_account, current_account_or_none

HISTORY_LIMIT = 30


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["name", "kind", "threshold", "days", "error_cause", "recipients", "cooldown_hours", "enabled"]
        labels = {
            "kind": "Condition",
            "days": "Within days",
            "error_cause": "Error cause",
            "cooldown_hours": "Reminder after (hours)",
        }
        help_texts = {
            "threshold": ("Percent, tokens, money, days, % unused, hours, × median or errors an hour, by condition."),
            "days": "Only for “a plan expiring within N days”.",
            "error_cause": "Only for an error surge.",
            "recipients": "Email addresses of members of the account, one per line or comma-separated.",
            "cooldown_hours": "One reminder while it keeps firing; 0 for none.",
        }
        widgets = {
            "name": forms.TextInput(attrs={"class": "input", "placeholder": "Token balance low"}),
            "kind": forms.Select(attrs={"class": "input"}),
            "threshold": forms.NumberInput(attrs={"class": "input", "step": "any", "min": "0"}),
            "days": forms.NumberInput(attrs={"class": "input", "min": "1"}),
            "recipients": forms.Textarea(
                attrs={"class": "input input--area", "rows": 2, "placeholder": "finance@example.com"}
            ),
            "cooldown_hours": forms.NumberInput(attrs={"class": "input", "min": "0"}),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        causes = [(c.value, c.label) for c in ErrorCause if c != ErrorCause.NONE]
        self.fields["error_cause"] = forms.ChoiceField(
            choices=[("", "—"), *causes],
            required=False,
            label="Error cause",
            help_text=self.fields["error_cause"].help_text,
            widget=forms.Select(attrs={"class": "input"}),
        )
        self.fields["kind"].choices = AlertKind.choices  # no empty choice: a rule always has a condition
        for name, field in self.fields.items():
            if self.errors.get(name):
                field.widget.attrs["aria-invalid"] = "true"

    def clean_recipients(self) -> str:
        raw = self.cleaned_data["recipients"]
        addresses = [p.strip() for p in raw.replace(";", ",").replace("\n", ",").split(",") if p.strip()]
        if not addresses:
            raise ValidationError("Give at least one email address.")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(f"{address!r} is not an email address.") from None
        return ", ".join(addresses)

    def clean_threshold(self) -> Decimal:
        value = self.cleaned_data["threshold"]
        if value is not None and value < 0:
            raise ValidationError("The threshold cannot be negative.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("kind")
        if kind == AlertKind.PLAN_EXPIRING_UNUSED and not data.get("days"):
            self.add_error("days", "Say within how many days the plan expires.")
        if kind == AlertKind.ERROR_SURGE and not data.get("error_cause"):
            data["error_cause"] = ErrorCause.INSUFFICIENT_QUOTA
        if kind != AlertKind.ERROR_SURGE:
            data["error_cause"] = ""
        if kind != AlertKind.PLAN_EXPIRING_UNUSED:
            data["days"] = None
        return data


def _page(request: HttpRequest, *, form: AlertRuleForm | None = None, editing: AlertRule | None = None) -> HttpResponse:
    account = current_account_or_none(request)
    context: dict[str, Any] = {"account": account, "tz_name": settings.DASHBOARD_TIME_ZONE, "editing": editing}
    if account is not None:
        rules = list(AlertRule.objects.filter(account=account).order_by("name", "pk"))
        open_episodes = {e.rule_id: e for e in AlertEpisode.objects.filter(account=account, resolved_at__isnull=True)}
        context |= {
            "rules": [(rule, alerts.describe(rule), open_episodes.get(rule.pk)) for rule in rules],
            "form": form or AlertRuleForm(instance=editing, initial=None if editing else {"cooldown_hours": 24}),
            "episodes": list(
                AlertEpisode.objects.filter(account=account)
                .select_related("rule")
                .prefetch_related(Prefetch("emails", queryset=AlertEmail.objects.order_by("created_at", "pk")))
                .order_by("-started_at", "-pk")[:HISTORY_LIMIT]
            ),
            "emails": list(
                AlertEmail.objects.filter(rule__account=account)
                .select_related("rule")
                .order_by("-created_at", "-pk")[:HISTORY_LIMIT]
            ),
            "failed_statuses": {AlertEmailStatus.FAILED, AlertEmailStatus.GAVE_UP},
            "kinds": AlertKind,
        }
    return render(request, "billing/alerts.html", context, status=400 if form is not None and form.errors else 200)


@role_required(Role.ADMIN)
def alert_rules(request: HttpRequest) -> HttpResponse:
    """GET: the page with a new-rule form; POST: create a rule."""
    account = current_account_or_none(request)
    if request.method == "POST" and account is not None:
        form = AlertRuleForm(request.POST, instance=AlertRule(account=account))
        if form.is_valid():
            rule = form.save()
            messages.success(request, f"Rule “{rule.name}” created; it is evaluated within 5 minutes.")
            alerts.schedule_evaluation(account.pk, delay=1)
            return redirect(reverse("billing:alerts"))
        return _page(request, form=form)
    return _page(request)


@role_required(Role.ADMIN)
def edit_alert_rule(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk, account=current_account(request))
    if request.method == "POST":
        form = AlertRuleForm(request.POST, instance=rule)
        if form.is_valid():
            form.save()
            messages.success(request, f"Rule “{rule.name}” saved.")
            alerts.schedule_evaluation(rule.account_id, delay=1)
            return redirect(reverse("billing:alerts"))
        return _page(request, form=form, editing=rule)
    return _page(request, editing=rule)


@require_POST
@role_required(Role.ADMIN)
def send_test_email(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk, account=current_account(request))
    email = alerts.send_test_email(rule)
    if email.status == AlertEmailStatus.SENT:
        messages.success(request, f"Test email sent to {', '.join(email.recipients)}.")
    else:
        messages.error(request, f"The test email could not be sent: {email.error}")
    return redirect(reverse("billing:alerts"))
