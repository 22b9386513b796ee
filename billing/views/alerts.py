"""The Alerts page (admin): rules and their tiers, the account's channels, a test per rule,
episodes and the delivery log (per rule on the rule's own page)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import get_language, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from billing import alert_texts, alerts
from billing.alert_rules import AUDITED_FIELDS, save_alert_rule
from billing.alert_tiers import effective_tiers, severity_label
from billing.audit import Actor
from billing.models import (
    AlertChannel,
    AlertDelivery,
    AlertEpisode,
    AlertKind,
    AlertNotification,
    AlertRule,
    ChannelKind,
    DeliveryStatus,
    parse_tiers,
)
from billing.notify.channels import create_channel
from billing.views.channels import ChannelForm, back_to
from toki_dashboard.forms import ErrorsInPlace, form_invalid, form_saved
from toki_dashboard.htmx import wants_fragment
from toki_dashboard.roles import Role, role_required
from usage.models import ErrorCause
from usage.tenancy import current_account, current_account_or_none

HISTORY_LIMIT = 30


class AlertRuleForm(ErrorsInPlace, forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = list(AUDITED_FIELDS)  # what people set on a rule is what its audit entries record
        labels = {
            "name": gettext_lazy("Name"),
            "kind": gettext_lazy("Condition"),
            "threshold": gettext_lazy("Threshold"),
            "days": gettext_lazy("Within days"),
            "error_cause": gettext_lazy("Error cause"),
            "recipients": gettext_lazy("Recipients"),
            "cooldown_hours": gettext_lazy("Reminder every (hours)"),
            "tiers": gettext_lazy("Severity tiers"),
            "enabled": gettext_lazy("Enabled"),
        }
        help_texts = {
            "threshold": gettext_lazy(
                "Percent, tokens, money, days, share unused (%), hours, × median or errors an hour, by condition."
            ),
            "days": gettext_lazy("Only for “a plan expiring within N days”."),
            "error_cause": gettext_lazy("Only for an error surge."),
            "tiers": gettext_lazy(
                "Least severe first, e.g. “14, 7, 3, 1” days; empty: the threshold and the standard tiers."
            ),
            "recipients": gettext_lazy(
                "Optional: emails of members of the account, besides the account's channels. Each is written "
                "to in the language they chose for the dashboard."
            ),
            "cooldown_hours": gettext_lazy("A reminder this often while it stays in a tier; 0 for none."),
        }
        widgets = {
            "name": forms.TextInput(attrs={"class": "input", "placeholder": gettext_lazy("e.g. Balance under 20%")}),
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
        tiers = self.instance.tiers if self.instance and self.instance.pk else []
        self.initial["tiers"] = ", ".join(str(t) for t in tiers)  # the model's list, written for people
        self.fields["tiers"] = forms.CharField(
            required=False,
            label=gettext_lazy("Severity tiers"),
            help_text=self.fields["tiers"].help_text,
            widget=forms.TextInput(attrs={"class": "input", "placeholder": "14, 7, 3, 1"}),
        )
        causes = [
            (c.value, alert_texts.ERROR_CAUSE_NAMES.get(c.value, c.label)) for c in ErrorCause if c != ErrorCause.NONE
        ]
        self.fields["error_cause"] = forms.ChoiceField(
            choices=[("", "—"), *causes],
            required=False,
            label=gettext_lazy("Error cause"),
            help_text=self.fields["error_cause"].help_text,
            widget=forms.Select(attrs={"class": "input"}),
        )
        # No empty choice: a rule always has a condition. Budget rules come with their budgets.
        cast(forms.ChoiceField, self.fields["kind"]).choices = [
            (k.value, k.label) for k in AlertKind if k != AlertKind.BUDGET
        ]
        for name, field in self.fields.items():
            if self.errors.get(name):
                field.widget.attrs["aria-invalid"] = "true"

    def clean_recipients(self) -> str:
        raw = self.cleaned_data["recipients"]
        addresses = [p.strip() for p in raw.replace(";", ",").replace("\n", ",").split(",") if p.strip()]
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(_("%(address)s is not an email address.") % {"address": repr(address)}) from None
        return ", ".join(addresses)

    def clean_tiers(self) -> list[str]:
        tiers = parse_tiers(self.cleaned_data.get("tiers") or "")
        if len(tiers) > 10:
            raise ValidationError(_("At most 10 tiers."))
        return [format(t.normalize(), "f") for t in tiers]

    def clean_threshold(self) -> Decimal:
        value = self.cleaned_data["threshold"]
        if value is not None and value < 0:
            raise ValidationError(_("The threshold cannot be negative."))
        return value

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind = data.get("kind")
        if data.get("tiers"):
            data["threshold"] = Decimal(data["tiers"][0])  # the least severe tier
        if kind == AlertKind.PLAN_EXPIRING_UNUSED and not data.get("days"):
            self.add_error("days", _("Say within how many days the plan expires."))
        if kind == AlertKind.ERROR_SURGE and not data.get("error_cause"):
            data["error_cause"] = ErrorCause.INSUFFICIENT_QUOTA
        if kind != AlertKind.ERROR_SURGE:
            data["error_cause"] = ""
        if kind != AlertKind.PLAN_EXPIRING_UNUSED:
            data["days"] = None
        return data


class BudgetRuleForm(AlertRuleForm):
    """A budget's rule takes its condition and tiers from the budget (the Budgets page)."""

    class Meta(AlertRuleForm.Meta):
        fields = ["recipients", "cooldown_hours", "enabled"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("tiers", "kind", "error_cause"):
            self.fields.pop(name, None)

    def clean(self) -> dict[str, Any]:
        forms.ModelForm.clean(self)
        return self.cleaned_data


def rule_form(rule: AlertRule | None, data: Any = None, *, account: Any = None) -> AlertRuleForm:
    if rule is not None and rule.kind == AlertKind.BUDGET:
        return BudgetRuleForm(data, instance=rule)
    instance = rule or AlertRule(account=account)
    return AlertRuleForm(data, instance=instance, initial=None if rule or data else {"cooldown_hours": 24})


def deliveries_of(account: Any, rule: AlertRule | None = None) -> list[AlertDelivery]:
    rows = AlertDelivery.objects.filter(notification__account=account)
    if rule is not None:
        rows = rows.filter(notification__rule=rule)
    return list(
        rows.select_related("notification__rule__budget", "channel").order_by("-created_at", "-pk")[:HISTORY_LIMIT]
    )


def _rule_row(rule: AlertRule, episode: AlertEpisode | None) -> dict[str, Any]:
    tiers = effective_tiers(rule)
    return {
        "rule": rule,
        "condition": alerts.describe(rule),  # in the active language
        "tiers": alerts.tiers_label(rule),
        "episode": episode,
        "severity": severity_label(episode.severity, len(tiers)) if episode else "",
    }


def _page(
    request: HttpRequest,
    *,
    form: AlertRuleForm | None = None,
    editing: AlertRule | None = None,
    channel_form: ChannelForm | None = None,
) -> HttpResponse:
    account = current_account_or_none(request)
    context: dict[str, Any] = {"account": account, "tz_name": settings.DASHBOARD_TIME_ZONE, "editing": editing}
    if account is not None and wants_fragment(request) and (form is not None or channel_form is not None):
        # htmx posted one form: it alone comes back, with its errors
        if channel_form is not None:
            context |= {"channel_form": channel_form, "channel_next": back_to(request)}
            return form_invalid(request, "billing/alerts.html", "billing/partials/alert_channel_form.html", context)
        rule_fragment = "billing/partials/alert_rule_form.html"
        return form_invalid(request, "billing/alerts.html", rule_fragment, context | {"form": form})
    if account is not None:
        rules = list(AlertRule.objects.filter(account=account).select_related("budget").order_by("name", "pk"))
        open_episodes = {e.rule_id: e for e in AlertEpisode.objects.filter(account=account, resolved_at__isnull=True)}
        channels = list(AlertChannel.objects.filter(account=account).order_by("kind", "pk"))
        context |= {
            "rules": [_rule_row(rule, open_episodes.get(rule.pk)) for rule in rules],
            "form": form or rule_form(editing, account=account),
            "channels": channels,
            "channel_form": channel_form or ChannelForm(),
            "episodes": list(
                AlertEpisode.objects.filter(account=account)
                .select_related("rule__budget")
                .prefetch_related(
                    Prefetch("notifications", queryset=AlertNotification.objects.order_by("created_at", "pk"))
                )
                .order_by("-started_at", "-pk")[:HISTORY_LIMIT]
            ),
            "deliveries": deliveries_of(account, editing),
            "failed_statuses": {DeliveryStatus.FAILED, DeliveryStatus.GAVE_UP},
            "kinds": AlertKind,
        }
    if (form is not None and form.errors) or (channel_form is not None and channel_form.errors):
        return form_invalid(request, "billing/alerts.html", "", context)
    return render(request, "billing/alerts.html", context)


@role_required(Role.ADMIN)
def alert_rules(request: HttpRequest) -> HttpResponse:
    """GET: the page with a new-rule form; POST: create a rule (or, with form=channel, add a channel)."""
    account = current_account_or_none(request)
    if request.method == "POST" and account is not None and request.POST.get("form") == "channel":
        return add_channel(request)
    if request.method == "POST" and account is not None:
        form = rule_form(None, request.POST, account=account)
        if form.is_valid():
            rule = save_alert_rule(form.save(commit=False), Actor.of_user(request.user))
            messages.success(
                request, _("Rule “%(name)s” created; it is evaluated within 5 minutes.") % {"name": rule.name}
            )
            return form_saved(request, reverse("billing:alerts"))
        return _page(request, form=form)
    return _page(request)


@role_required(Role.ADMIN)
def edit_alert_rule(request: HttpRequest, pk: int) -> HttpResponse:
    """The rule's form, the channels it notifies and its delivery log."""
    rule = get_object_or_404(AlertRule, pk=pk, account=current_account(request))
    if request.method == "POST":
        form = rule_form(rule, request.POST)
        if form.is_valid():
            save_alert_rule(form.save(commit=False), Actor.of_user(request.user))
            messages.success(request, _("Rule “%(name)s” saved.") % {"name": rule.name})
            return form_saved(request, reverse("billing:alerts"))
        return _page(request, form=form, editing=rule)
    return _page(request, editing=rule)


def report_deliveries(request: HttpRequest, deliveries: list[AlertDelivery]) -> None:
    """One message per delivery of a test: where it went, and how that went."""
    if not deliveries:
        messages.error(request, _("Nobody would be told: the rule has no recipients and the account no channel."))
    for delivery in deliveries:
        if delivery.kind == "email":
            to = ", ".join(delivery.recipients)
            what = _("Test email sent to %(to)s.") % {"to": to}
            failed = _("The test email to %(to)s could not be sent: %(error)s") % {"to": to, "error": delivery.error}
        else:
            code = f" (HTTP {delivery.response_code})" if delivery.response_code else ""
            where = {"kind": str(delivery.get_kind_display()).lower(), "target": delivery.target, "code": code}
            what = _("Test sent to %(kind)s %(target)s%(code)s.") % where
            failed = _("The test to %(kind)s %(target)s failed%(code)s: %(error)s") % (
                where | {"error": delivery.error}
            )
        if delivery.status == DeliveryStatus.SENT:
            messages.success(request, what)
        else:
            messages.error(request, failed)


@require_POST
@role_required(Role.ADMIN)
def send_test(request: HttpRequest, pk: int) -> HttpResponse:
    rule = get_object_or_404(AlertRule, pk=pk, account=current_account(request))
    report_deliveries(request, alerts.send_test(rule))
    return redirect(back_to(request))


@require_POST
@role_required(Role.ADMIN)
def add_channel(request: HttpRequest) -> HttpResponse:
    """Add a channel (the Alerts page posts here with form=channel; this URL takes the same post).
    Refused, the form comes back with its errors in place."""
    account = current_account(request)
    form = ChannelForm(request.POST)
    if not form.is_valid():
        return _page(request, channel_form=form)
    data = form.cleaned_data
    try:
        added = create_channel(
            account,
            kind=data["kind"],
            target=data["target"],
            secret=data["secret"],
            name=data["name"],
            language=data["language"] or get_language(),
            created_by=request.user,
        )
    except ValidationError as exc:
        for field, errors in exc.message_dict.items():
            for error in errors:
                form.add_error(field if field in form.fields else None, error)
        return _page(request, channel_form=form)
    text = _("Channel %(channel)s added; every rule and budget of %(account)s now notifies it.") % {
        "channel": added.channel.label,
        "account": account.name,
    }
    if data["kind"] == ChannelKind.WEBHOOK and not data["secret"]:
        text += " " + _("Its signing secret, shown this once: %(secret)s") % {"secret": added.secret}
    messages.success(request, text)
    return form_saved(request, back_to(request))
