"""The wallet ledger (recorded through the services, reversed with a reason) and the read-only
allocations, expiries and audit trail."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from billing import services
from billing.admin.common import ReadOnlyAdmin, ReasonActionForm, request_actor
from billing.models import MANUAL_WALLET_KINDS, Allocation, AuditEvent, PlanExpiry, WalletEntry


class WalletEntryForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=[(k.value, k.label) for k in MANUAL_WALLET_KINDS])

    class Meta:
        model = WalletEntry
        fields = ("account", "kind", "amount", "currency", "occurred_at", "note")

    def entry_data(self) -> services.WalletEntryData:
        data = self.cleaned_data
        return services.WalletEntryData(
            kind=data["kind"],
            amount=data["amount"],
            currency=data["currency"],
            occurred_at=data["occurred_at"],
            idempotency_key=f"admin:{uuid.uuid4()}",
            note=data.get("note") or "",
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if not self.errors and self.instance.pk is None:
            try:
                self.entry_data().check(cleaned["account"])
            except services.BillingError as exc:
                raise forms.ValidationError(str(exc)) from exc
        return cleaned


@admin.register(WalletEntry)
class WalletEntryAdmin(admin.ModelAdmin):
    form = WalletEntryForm
    action_form = ReasonActionForm
    actions = ("reverse_entries",)
    list_display = ("occurred_at", "account", "kind", "amount", "currency", "note", "created_via")
    list_filter = ("account", "kind")
    search_fields = ("note", "idempotency_key")
    date_hierarchy = "occurred_at"

    def get_readonly_fields(self, request: HttpRequest, obj: WalletEntry | None = None) -> Any:
        return () if obj is None else [f.name for f in WalletEntry._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: WalletEntry, form: Any, change: bool) -> None:
        if change:
            return  # the ledger is append-only: reverse and record again
        entry, _ = services.record_wallet_entry(obj.account, form.entry_data(), request_actor(request))
        obj.pk = entry.pk

    @admin.action(description="Reverse selected entries (give a reason)")
    def reverse_entries(self, request: HttpRequest, queryset: QuerySet[WalletEntry]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason to reverse entries.", messages.ERROR)
            return
        for entry in queryset:
            try:
                services.reverse_wallet_entry(entry, request_actor(request), reason)
                self.message_user(request, f"Reversed {entry}.", messages.SUCCESS)
            except services.BillingError as exc:
                self.message_user(request, str(exc), messages.WARNING)


@admin.register(Allocation)
class AllocationAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "account", "record", "purchase", "tokens", "amount", "record_cost")
    list_filter = ("account",)
    list_select_related = ("record", "purchase")
    raw_id_fields = ("record", "purchase")
    show_full_result_count = False


@admin.register(PlanExpiry)
class PlanExpiryAdmin(ReadOnlyAdmin):
    list_display = ("purchase", "account", "tokens", "expired_at")
    list_filter = ("account",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_label", "action", "object_type", "object_id", "account")
    list_filter = ("action", "object_type", "account")
    search_fields = ("actor_label", "object_id")
    date_hierarchy = "at"
