from functools import partial
from typing import Any, cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from usage import tasks
from usage.models import (
    Account,
    ApiKey,
    DailyUsage,
    EstimatorFit,
    ExchangeRate,
    HourlyUsage,
    Membership,
    ModelPrice,
    RateSource,
    UsageRecord,
)
from usage.services import rename_api_key


class MembershipInline(admin.TabularInline):
    """Who sees the account. Roles are the users' groups; admins see every account anyway."""

    model = Membership
    extra = 0
    autocomplete_fields = ("user",)
    readonly_fields = ("created_at",)
    verbose_name = "member"
    verbose_name_plural = "members (users who see this account)"


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "provider", "currency", "base_url", "credentials_hint")
    list_filter = ("provider", "currency")
    search_fields = ("name", "slug")
    exclude = ("credentials_encrypted",)
    readonly_fields = ("credentials_hint",)
    inlines = (MembershipInline,)
    # A base URL typed without a scheme is taken as https (Django 6's default too).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ("rebuild_rollups",)

    @admin.action(description="Rebuild rollups from the records (in the background)")
    def rebuild_rollups(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        # The same recount as `manage.py rebuild_rollups`, on a worker: a large account takes minutes.
        for account_id in queryset.values_list("pk", flat=True):
            transaction.on_commit(partial(tasks.rebuild_rollups.delay, account_id))
        self.message_user(request, f"Rollup rebuild queued for {queryset.count()} account(s).", messages.SUCCESS)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are named here; their team is not. A team move is made on the Keys page (Edit),
    which records from when it holds and moves the rollups and budgets with it: a team typed
    here would leave no assignment, so a late import of older records would count for it."""

    list_display = ("name", "account", "team", "last4", "provider_status", "first_seen_at")
    list_filter = ("account", "team", "provider_status")
    search_fields = ("name", "team")
    readonly_fields = ("account", "fingerprint", "team", "last4", "first_seen_at")

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change and "name" in form.changed_data:  # a rename: key budgets follow it
            rename_api_key(obj, name=obj.name, team=obj.team, user=request.user)
        super().save_model(request, obj, form, change)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model_pattern",
        "account",
        "input_per_mtok",
        "cached_input_per_mtok",
        "output_per_mtok",
        "currency",
        "effective_from",
        "effective_to",
        "source",
    )
    list_filter = ("source", "currency", "account")
    search_fields = ("model_pattern",)


@admin.register(UsageRecord)
class UsageRecordAdmin(admin.ModelAdmin):
    list_display = (
        "request_id",
        "occurred_at",
        "model",
        "api_key",
        "team",
        "status_code",
        "error_cause",
        "prompt_tokens",
        "completion_tokens",
        "tokens_source",
        "cost",
        "source",
    )
    list_filter = ("account", "source", "tokens_source", "error_cause", "stream", "model")
    search_fields = ("request_id", "model")
    date_hierarchy = "occurred_at"
    list_select_related = ("api_key",)
    show_full_result_count = False  # counting millions of rows on every page is slow

    def has_change_permission(self, request, obj=None) -> bool:  # noqa: ANN001
        return False  # records change only through ingestion, which keeps rollups exact

    def has_add_permission(self, request) -> bool:  # noqa: ANN001
        return False


class RollupAdmin(admin.ModelAdmin):
    """Rollups are written only by ingestion and `rebuild_rollups`, which keep them equal to a
    recount of the records: the admin shows them and never adds, edits or deletes a row."""

    list_display: tuple[str, ...] = ("account", "model", "api_key", "team", "requests", "errors", "cost")
    list_filter = ("account", "model", "team")
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(HourlyUsage)
class HourlyUsageAdmin(RollupAdmin):
    list_display = ("hour", *RollupAdmin.list_display)
    date_hierarchy = "hour"


@admin.register(DailyUsage)
class DailyUsageAdmin(RollupAdmin):
    list_display = ("day", *RollupAdmin.list_display)
    date_hierarchy = "day"


@admin.register(EstimatorFit)
class EstimatorFitAdmin(admin.ModelAdmin):
    """Fits are made by calibration; the admin shows them and their measured error, never edits them."""

    list_display = (
        "scope",
        "kind",
        "active",
        "samples",
        "median_error",
        "p90_error",
        "fallback_median_error",
        "trained_at",
    )
    list_filter = ("kind", "active")
    search_fields = ("scope",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: EstimatorFit | None = None) -> bool:
        return False


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Rates are entered, never edited: a correction is a new entry for the same moment (the
    latest entered wins), so the list is also the audit of who entered what."""

    list_display = ("from_currency", "to_currency", "rate", "effective_from", "source", "entered_by", "entered_at")
    list_filter = ("to_currency", "from_currency", "source")
    fields = ("from_currency", "to_currency", "rate", "effective_from", "note")
    date_hierarchy = "effective_from"

    def has_change_permission(self, request: HttpRequest, obj: ExchangeRate | None = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ExchangeRate, form: Any, change: bool) -> None:
        obj.source, obj.entered_by = RateSource.ADMIN, cast(User, request.user)  # the admin requires a login
        super().save_model(request, obj, form, change)


import usage.admin_dead_letters  # noqa: E402, F401  (registers DeadLetterAdmin)
