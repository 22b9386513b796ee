""" "Sync models now" on the model catalogue page: queue a catalogue sync of the account."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.translation import gettext
from django.views.decorators.http import require_POST

from billing import tasks
from toki_dashboard.roles import Role, role_required
from usage.catalogue.models import CatalogueTrigger
from usage.tenancy import current_account_or_none


@role_required(Role.ENGINEER)
@require_POST
def sync_models_now(request: HttpRequest) -> HttpResponse:
    account = current_account_or_none(request)
    if account is None:
        messages.error(request, gettext("There is no account to sync: create one with manage.py create_account."))
        return redirect("usage:catalogue")
    account_id = account.pk
    transaction.on_commit(lambda: tasks.sync_model_catalogue.delay(account_id, CatalogueTrigger.MANUAL))
    messages.success(
        request,
        gettext("A sync of %(name)s's model list was requested; it runs in the background. Reload to see it.")
        % {"name": account.name},
    )
    return redirect("usage:catalogue")
