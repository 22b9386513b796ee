"""Choosing the dashboard's language: stored for the user, so it follows them to every session."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from toki_dashboard.language import SESSION_KEY
from usage import services


@require_POST
def choose_language(request: HttpRequest) -> HttpResponse:
    language = request.POST.get("language", "")
    if language not in dict(settings.LANGUAGES):
        return HttpResponseBadRequest(
            _("Unknown language: choose one of %(codes)s.") % {"codes": ", ".join(dict(settings.LANGUAGES))},
            content_type="text/plain; charset=utf-8",
        )
    user_id = request.user.pk  # LoginRequiredMiddleware lets only signed-in users here
    assert user_id is not None
    services.choose_language(user_id=user_id, language=language)
    request.session[SESSION_KEY] = language
    translation.activate(language)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        target = reverse("usage:overview")
    response = HttpResponseRedirect(target)
    # The cookie keeps the choice for the login page once signed out.
    response.set_cookie(settings.LANGUAGE_COOKIE_NAME, language, samesite="Lax", secure=request.is_secure())
    return response
