"""Provider readings and sync: balance snapshots (finance may add one read off the console), the
read-only sync runs, and each account's provider with write-only credentials and "Sync now"."""

from __future__ import annotations

from functools import partial
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from billing import services, sync
from billing.admin.common import ReadOnlyAdmin, request_actor
from billing.models import BalanceSnapshot, ProviderAccount, SyncRun, SyncState, SyncTrigger
from billing.providers import REQUIRED_CREDENTIALS
from toki_dashboard import background


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
            actor=request_actor(request),
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
        for account in queryset:
            account_id = account.pk
            transaction.on_commit(
                partial(background.enqueue, "billing.tasks.sync_account", account_id, SyncTrigger.MANUAL)
            )
        self.message_user(request, f"Sync queued for {queryset.count()} account(s).", messages.SUCCESS)
