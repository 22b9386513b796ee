"""The admin for budgets, alert channels and the delivery log (imported by billing.admin).

Budgets are saved through `billing.budgets.services` (audit event, alert rule, proxy gate);
channel URLs and secrets are entered here and stored encrypted, never shown back."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from billing.audit import Actor
from billing.budgets import services
from billing.budgets.services import BudgetData
from billing.models import AlertChannel, AlertDelivery, Budget, ChannelKind, parse_tiers
from billing.notify.channels import check_target, create_channel, remove_channel
from billing.services import BillingError


class BudgetAdminForm(forms.ModelForm):
    thresholds_text = forms.CharField(label="Thresholds (%)", initial="50, 80, 100")

    class Meta:
        model = Budget
        fields = [
            "account",
            "name",
            "scope",
            "target",
            "measure",
            "amount",
            "period",
            "starts_on",
            "ends_on",
            "enforce",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["thresholds_text"].initial = ", ".join(str(t) for t in self.instance.thresholds)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        account = data.get("account")
        if account is None:
            return data  # the account field says what is missing
        try:
            thresholds = parse_tiers(data.get("thresholds_text") or "")
            self.budget_data = services.validate(
                account,
                BudgetData(
                    name=data.get("name") or "",
                    amount=data.get("amount") or Decimal(0),
                    scope=data.get("scope") or "account",
                    target=data.get("target") or "",
                    measure=data.get("measure") or "paid",
                    period=data.get("period") or "month",
                    starts_on=data.get("starts_on"),
                    ends_on=data.get("ends_on"),
                    thresholds=thresholds,
                    enforce=bool(data.get("enforce")),
                ),
            )
        except (BillingError, ValidationError) as exc:
            raise ValidationError(str(exc.messages[0] if isinstance(exc, ValidationError) else exc)) from None
        return data


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    form = BudgetAdminForm
    list_display = ("name", "account", "scope", "target", "measure", "amount", "period", "enforce")
    list_filter = ("account", "scope", "measure", "period", "enforce")
    search_fields = ("name", "target")

    def save_model(self, request: HttpRequest, obj: Budget, form: Any, change: bool) -> None:
        actor = Actor.of_user(request.user)
        if change:
            services.update_budget(obj, form.budget_data, actor)
        else:
            obj.pk = services.create_budget(obj.account, form.budget_data, actor)[0].pk

    def delete_model(self, request: HttpRequest, obj: Budget) -> None:
        services.delete_budget(obj, Actor.of_user(request.user))


class ChannelAdminForm(forms.ModelForm):
    target = forms.CharField(
        max_length=2000, help_text="An email of a member, a webhook URL, or an apprise URL; stored encrypted"
    )
    secret = forms.CharField(
        max_length=500, required=False, widget=forms.PasswordInput, help_text="Webhooks: empty makes one"
    )

    class Meta:
        model = AlertChannel
        fields = ["account", "kind", "name", "enabled"]

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if data.get("account") and data.get("kind") and data.get("target"):
            check_target(data["account"], data["kind"], data["target"].strip())
        return data


@admin.register(AlertChannel)
class AlertChannelAdmin(admin.ModelAdmin):
    list_display = ("label", "account", "kind", "hint", "enabled", "created_at")
    list_filter = ("account", "kind", "enabled")
    readonly_fields = ("hint",)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is not None:  # a channel's target is never shown back: change its name or switch it off
            kwargs["fields"] = ["name", "enabled"]
            return super().get_form(request, obj, change=change, **kwargs)
        return ChannelAdminForm

    def save_model(self, request: HttpRequest, obj: AlertChannel, form: Any, change: bool) -> None:
        if change:
            obj.save()
            return
        data = form.cleaned_data
        added = create_channel(
            data["account"],
            kind=data["kind"],
            target=data["target"],
            secret=data.get("secret", ""),
            name=data.get("name", ""),
            created_by=request.user,
        )
        obj.pk = added.channel.pk
        if data["kind"] == ChannelKind.WEBHOOK and not data.get("secret"):
            self.message_user(request, f"The webhook's signing secret, shown this once: {added.secret}")

    def delete_model(self, request: HttpRequest, obj: AlertChannel) -> None:
        remove_channel(obj, Actor.of_user(request.user))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AlertChannel]) -> None:
        for channel in queryset:
            remove_channel(channel, Actor.of_user(request.user))


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "target", "status", "response_code", "attempts")
    list_filter = ("kind", "status")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
