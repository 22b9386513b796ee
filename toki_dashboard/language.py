"""The language a page is rendered in: the signed-in user's choice, else the browser's.

`LocaleMiddleware` (before this one) activates the language of the `django_language`
cookie or of Accept-Language. This middleware, after authentication, replaces it with the
language the user chose (`usage.models.UserLanguage`), read once per session and kept in
it; choosing a language (`usage.views.language.choose_language`) updates both.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation

SESSION_KEY = "toki_language"  # the user's choice, or "" for "the browser's"


def language_of_user(user_id: int) -> str:
    from usage.models import UserLanguage

    return UserLanguage.objects.filter(user_id=user_id).values_list("language", flat=True).first() or ""


def chosen_language(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    def middleware(request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            chosen = request.session.get(SESSION_KEY)
            if chosen is None:
                chosen = language_of_user(user.pk)
                request.session[SESSION_KEY] = chosen
            if chosen and translation.check_for_language(chosen):
                translation.activate(chosen)
                request.LANGUAGE_CODE = translation.get_language()
        return get_response(request)

    return middleware
