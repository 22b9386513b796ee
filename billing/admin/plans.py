"""Token Plans and purchases: recorded through the services, voided (with a reason), never edited."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet, Sum
from django.http import HttpRequest

from billing import services
from billing.admin.common import ReasonActionForm, request_actor
from billing.models import PlanPurchase, TokenPlan


@admin.register(TokenPlan)
class TokenPlanAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "tokens", "price", "currency", "validity_days", "priority", "active")
    list_filter = ("account", "active")
    search_fields = ("name",)

    def save_model(self, request: HttpRequest, obj: TokenPlan, form: Any, change: bool) -> None:
        services.save_plan(obj, request_actor(request))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: purchases refer to plans


class PurchaseForm(forms.ModelForm):
    class Meta:
        model = PlanPurchase
        fields = (
            "account",
            "plan",
            "tokens",
            "price",
            "currency",
            "effective_at",
            "expires_at",
            "allowed_models",
            "priority",
            "token_basis",
            "paid_from_wallet",
        )

    def purchase_data(self) -> services.PurchaseData:
        data = self.cleaned_data
        return services.PurchaseData(
            plan=data["plan"].name,
            tokens=data["tokens"],
            price=data["price"],
            currency=data["currency"],
            effective_at=data["effective_at"],
            expires_at=data["expires_at"],
            idempotency_key=f"admin:{uuid.uuid4()}",
            models=list(data.get("allowed_models") or []),
            priority=data["priority"],
            paid_from_wallet=data["paid_from_wallet"],
            token_basis=data["token_basis"],
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors and self.instance.pk is None:
            try:
                self.purchase_data().check(cleaned["account"])
            except services.BillingError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


@admin.register(PlanPurchase)
class PlanPurchaseAdmin(admin.ModelAdmin):
    form = PurchaseForm
    action_form = ReasonActionForm
    actions = ("void_purchases",)
    list_display = ("name", "account", "tokens", "used", "price", "effective_at", "expires_at", "priority", "voided_at")
    list_filter = ("account", "voided_at")
    search_fields = ("name", "idempotency_key")
    date_hierarchy = "effective_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PlanPurchase]:
        return super().get_queryset(request).annotate(tokens_used=Sum("allocations__tokens"))

    @admin.display(description="tokens used", ordering="tokens_used")
    def used(self, obj: PlanPurchase) -> int:
        return getattr(obj, "tokens_used", None) or 0

    def get_readonly_fields(self, request: HttpRequest, obj: PlanPurchase | None = None) -> Any:
        if obj is None:
            return ()
        return [f.name for f in PlanPurchase._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: PlanPurchase, form: Any, change: bool) -> None:
        if change:
            return  # purchases are never edited: void and record again
        purchase, _ = services.record_purchase(obj.account, form.purchase_data(), request_actor(request))
        obj.pk = purchase.pk

    @admin.action(description="Void selected purchases (give a reason)")
    def void_purchases(self, request: HttpRequest, queryset: QuerySet[PlanPurchase]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason to void purchases.", messages.ERROR)
            return
        for purchase in queryset:
            try:
                services.void_purchase(purchase, request_actor(request), reason)
                self.message_user(request, f"Voided {purchase}.", messages.SUCCESS)
            except services.BillingError as exc:
                self.message_user(request, str(exc), messages.WARNING)
