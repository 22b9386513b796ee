"""Billing in the Django admin until the finance pages exist.

Purchases and wallet entries are added through the services (so they are audited
and allocations follow) and never changed or deleted: purchases are voided and
wallet entries reversed by actions that ask for a reason. Ledger, allocations,
snapshots, sync runs and the audit trail are read-only. Credentials are write-only.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db.models import QuerySet, Sum
from django.http import HttpRequest

from billing import services, sync
from billing.audit import Actor
from billing.models import (
    MANUAL_WALLET_KINDS,
    Allocation,
    AuditEvent,
    BalanceSnapshot,
    PlanExpiry,
    PlanPurchase,
    ProviderAccount,
    SyncRun,
    SyncState,
    SyncTrigger,
    TokenPlan,
    WalletEntry,
)
from billing.providers import REQUIRED_CREDENTIALS


class ReasonActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason", help_text="Required to void or reverse")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _actor(request: HttpRequest) -> Actor:
    return Actor.of_user(request.user)


@admin.register(TokenPlan)
class TokenPlanAdmin(admin.ModelAdmin):
    list_display = ("name", "account", "tokens", "price", "currency", "validity_days", "priority", "active")
    list_filter = ("account", "active")
    search_fields = ("name",)

    def save_model(self, request: HttpRequest, obj: TokenPlan, form: Any, change: bool) -> None:
        services.save_plan(obj, _actor(request))

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
        purchase, _ = services.record_purchase(obj.account, form.purchase_data(), _actor(request))
        obj.pk = purchase.pk

    @admin.action(description="Void selected purchases (give a reason)")
    def void_purchases(self, request: HttpRequest, queryset: QuerySet[PlanPurchase]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason to void purchases.", messages.ERROR)
            return
        for purchase in queryset:
            try:
                services.void_purchase(purchase, _actor(request), reason)
                self.message_user(request, f"Voided {purchase}.", messages.SUCCESS)
            except services.BillingError as exc:
                self.message_user(request, str(exc), messages.WARNING)


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
        entry, _ = services.record_wallet_entry(obj.account, form.entry_data(), _actor(request))
        obj.pk = entry.pk

    @admin.action(description="Reverse selected entries (give a reason)")
    def reverse_entries(self, request: HttpRequest, queryset: QuerySet[WalletEntry]) -> None:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            self.message_user(request, "Give a reason to reverse entries.", messages.ERROR)
            return
        for entry in queryset:
            try:
                services.reverse_wallet_entry(entry, _actor(request), reason)
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


class BalanceForm(forms.ModelForm):
    class Meta:
        model = BalanceSnapshot
        fields = ("account", "taken_at", "balance", "token_balance", "note")


@admin.register(BalanceSnapshot)
class BalanceSnapshotAdmin(admin.ModelAdmin):
    """Read-only, except that finance may add a balance read off the console (manual provider)."""

    form = BalanceForm
    list_display = ("taken_at", "account", "balance", "currency", "token_balance", "source", "sync_run")
    list_filter = ("account", "source")
    date_hierarchy = "taken_at"

    def get_readonly_fields(self, request: HttpRequest, obj: BalanceSnapshot | None = None) -> Any:
        return () if obj is None else [f.name for f in BalanceSnapshot._meta.fields]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: BalanceSnapshot, form: Any, change: bool) -> None:
        if change:
            return
        snapshot = services.record_manual_balance(
            obj.account,
            balance=obj.balance,
            taken_at=obj.taken_at,
            actor=_actor(request),
            note=obj.note,
            token_balance=obj.token_balance,
        )
        obj.pk = snapshot.pk


@admin.register(SyncRun)
class SyncRunAdmin(ReadOnlyAdmin):
    list_display = (
        "started_at",
        "account",
        "trigger",
        "attempt",
        "outcome",
        "duration_ms",
        "records_ingested",
        "duplicates",
        "error",
    )
    list_filter = ("account", "outcome", "trigger")
    date_hierarchy = "started_at"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor_label", "action", "object_type", "object_id", "account")
    list_filter = ("action", "object_type", "account")
    search_fields = ("actor_label", "object_id")
    date_hierarchy = "at"


class CredentialsForm(forms.ModelForm):
    """Provider settings with write-only credentials: blank keeps what is stored."""

    api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="The relay key (sk-…): openai_billing's balance, and any provider's model list (/models)",
    )
    access_token = forms.CharField(
        required=False, widget=forms.PasswordInput(render_value=False), help_text="newapi_console: console token"
    )
    user_id = forms.CharField(required=False, help_text="newapi_console: the numeric user id (New-Api-User)")
    base_url = forms.URLField(max_length=500, assume_scheme="https", help_text="The TOKI API base URL (…/v1)")
    clear_credentials = forms.BooleanField(required=False)

    class Meta:
        model = ProviderAccount
        fields = ("provider", "base_url", "sync_interval_minutes")

    def save(self, commit: bool = True) -> ProviderAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("clear_credentials"):
            account.set_credentials({})
        else:
            values = account.get_credentials()
            for name in ("api_key", "access_token", "user_id"):
                if self.cleaned_data.get(name):
                    values[name] = self.cleaned_data[name].strip()
            account.set_credentials(values)
        if commit:
            account.save()
        return account


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    """Each account's provider, write-only credentials, sync history and "Sync now"."""

    form = CredentialsForm
    actions = ("sync_now",)
    list_display = (
        "name",
        "provider",
        "credentials_hint",
        "credentials",
        "last_success",
        "last_error",
        "last_duration",
        "sync_interval_minutes",
    )
    readonly_fields = ("credentials_hint", "credentials", "last_success", "last_error", "last_duration")

    def get_queryset(self, request: HttpRequest) -> QuerySet[ProviderAccount]:
        return super().get_queryset(request).select_related("sync_state")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # accounts are created with `manage.py create_account`

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def _state(self, obj: ProviderAccount) -> SyncState | None:
        return SyncState.objects.filter(account_id=obj.pk).first()

    @admin.display(description="credentials")
    def credentials(self, obj: ProviderAccount) -> str:
        needed = REQUIRED_CREDENTIALS.get(obj.provider, ())
        if not needed:
            return "not needed"
        if not obj.credentials_encrypted:
            return "missing"
        state = self._state(obj)
        rejected = state and not state.credentials_valid and state.rejected_credentials == sync.credentials_digest(obj)
        return "rejected by the provider" if rejected else "set"

    @admin.display(description="last success")
    def last_success(self, obj: ProviderAccount) -> Any:
        state = self._state(obj)
        return state.last_success_at if state else None

    @admin.display(description="last error")
    def last_error(self, obj: ProviderAccount) -> str:
        state = self._state(obj)
        if state is None or not state.last_error_at:
            return ""
        return f"{state.last_error_at:%Y-%m-%d %H:%M} {state.last_error}"

    @admin.display(description="duration (ms)")
    def last_duration(self, obj: ProviderAccount) -> Any:
        state = self._state(obj)
        return state.last_duration_ms if state else None

    @admin.action(description="Sync now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        from django.db import transaction

        from billing import tasks

        for account in queryset:
            account_id = account.pk
            transaction.on_commit(partial(tasks.sync_account.delay, account_id, SyncTrigger.MANUAL))
        self.message_user(request, f"Sync queued for {queryset.count()} account(s).", messages.SUCCESS)


from billing import admin_alerting  # noqa: E402, F401  (budgets, channels, deliveries: a module of their own)
