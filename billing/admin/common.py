"""What the billing admin pages share: the reason asked by void and reverse actions, read-only pages,
and the actor an admin request audits as."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ActionForm
from django.http import HttpRequest

from billing.audit import Actor


class ReasonActionForm(ActionForm):
    reason = forms.CharField(required=False, label="Reason", help_text="Required to void or reverse")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def request_actor(request: HttpRequest) -> Actor:
    return Actor.of_user(request.user)
