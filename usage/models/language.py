"""The language each user chose for the dashboard (English or Simplified Chinese).

A user without a row reads the pages in the browser's language (Accept-Language), which
`django.middleware.locale.LocaleMiddleware` picks; a row overrides it on every request.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class UserLanguage(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="language_choice")
    language = models.CharField(max_length=10, choices=settings.LANGUAGES)
    chosen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user_id}: {self.language}"
