"""Login throttling with django-axes: after LOGIN_FAILURE_LIMIT wrong passwords for one
username from one address, that username is locked out from that address for
LOGIN_LOCKOUT_MINUTES, the right password included (the site's and the admin's login pages)."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' check for every login that comes with a request (both login pages).

    Code that authenticates without a request (the test client's `login()`, a script) has no
    client address to throttle, and is left to the next backend instead of failing."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def client_ip(request: HttpRequest) -> str:
    """The caller's address: REMOTE_ADDR, or behind FORWARDED_FOR_PROXIES reverse proxies the
    address the outermost of them saw (counted from the right of X-Forwarded-For)."""
    proxies = settings.FORWARDED_FOR_PROXIES
    if proxies:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")
