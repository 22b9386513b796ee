"""Dead letters in the admin: review why a record was set aside, fix its fields, replay it."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from usage import deadletters
from usage.models import DeadLetter


class DeadLetterForm(forms.ModelForm):
    class Meta:
        model = DeadLetter
        fields = ("payload",)
        widgets = {"payload": forms.Textarea(attrs={"rows": 20, "cols": 100})}

    def clean_payload(self) -> str:
        text = self.cleaned_data["payload"]
        try:
            fields = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(fields, dict):
            raise forms.ValidationError("The payload must be a JSON object of record fields.")
        # Stored as ASCII JSON, so that any character a fix leaves in survives the database.
        return json.dumps(fields, ensure_ascii=True, sort_keys=True)


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    """Only the payload can be edited (to fix the record); replaying stores it."""

    form = DeadLetterForm
    list_display = ("created_at", "account", "source", "request_id", "short_reason", "attempts", "resolution")
    list_filter = (OpenFilter, "source", "resolution", "account")
    search_fields = ("request_id", "reason")
    readonly_fields = (
        "account",
        "source",
        "request_id",
        "reason",
        "created_at",
        "attempts",
        "last_attempt_at",
        "resolved_at",
        "resolution",
    )
    fields = (*readonly_fields, "payload")
    actions = ("replay_selected", "discard_selected")

    @admin.display(description="reason")
    def short_reason(self, letter: DeadLetter) -> str:
        return letter.reason if len(letter.reason) <= 120 else letter.reason[:119] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: DeadLetter | None = None) -> bool:
        return super().has_change_permission(request, obj) and (obj is None or obj.is_open)

    @admin.action(description="Replay selected dead letters")
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        summary = deadletters.replay(queryset.select_related("account").order_by("pk"))
        level = messages.WARNING if summary.still_failing else messages.SUCCESS
        self.message_user(request, f"Replayed: {summary.describe()}.", level)
        for pk, reason in summary.still_failing[:10]:
            self.message_user(request, f"Dead letter {pk}: {reason}", messages.WARNING)

    @admin.action(description="Discard selected dead letters (never replay them)")
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        self.message_user(request, f"Discarded {deadletters.discard(queryset)} dead letter(s).")
