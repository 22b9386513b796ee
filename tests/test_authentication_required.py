"""Every URL the project serves refuses anonymous visitors, except the few pages that must not.

The walker below visits the whole URL conf, so a view added later without login
protection fails this file without anyone having to remember to list it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from re import _parser as sre_parse  # type: ignore[attr-defined]  # the stdlib regex parser, 3.11+
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, include, path, resolve
from django.urls import converters as url_converters
from django.urls.resolvers import RoutePattern

import toki_dashboard.urls

# Pages an anonymous visitor must be able to open. Nothing else belongs here.
PUBLIC_VIEW_NAMES = frozenset({"login", "admin:login"})
# Static files are served by WhiteNoise (middleware, outside the URL conf) or, in DEBUG,
# by staticfiles' own patterns; either way they are public by design.
PUBLIC_PREFIXES = ("/" + settings.STATIC_URL.lstrip("/"),)
# What an anonymous GET may get instead of a redirect to the login page: API answers.
REFUSALS = frozenset({401, 403, 404, 405})


@dataclass(frozen=True)
class Endpoint:
    url: str
    view_name: str
    route: str
    view: Any


# --- Building a concrete URL for every pattern -------------------------------------------------

SAMPLE_BY_CONVERTER: dict[type, str] = {
    url_converters.IntConverter: "1",
    url_converters.SlugConverter: "x",
    url_converters.StringConverter: "x",
    url_converters.PathConverter: "x",
    url_converters.UUIDConverter: str(uuid.UUID(int=1)),
}
ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


def _route_sample(pattern: RoutePattern) -> str:
    def sample(match: re.Match[str]) -> str:
        converter = pattern.converters[match["parameter"]]
        for kind, value in SAMPLE_BY_CONVERTER.items():
            if isinstance(converter, kind):
                return value
        # A project converter: the shortest string its regex accepts.
        return _regex_sample(converter.regex)

    return ROUTE_PARAMETER.sub(sample, str(pattern))


_CATEGORY_REGEX = {
    sre_parse.CATEGORY_DIGIT: r"\d",
    sre_parse.CATEGORY_NOT_DIGIT: r"\D",
    sre_parse.CATEGORY_WORD: r"\w",
    sre_parse.CATEGORY_NOT_WORD: r"\W",
    sre_parse.CATEGORY_SPACE: r"\s",
    sre_parse.CATEGORY_NOT_SPACE: r"\S",
}
PREFERRED_CHARS = "x1a0-_."  # plausible path characters, best first


def _in_class(items: list[tuple[Any, Any]], char: str) -> bool:
    """Whether `char` belongs to a parsed character class such as [^/] or [-a-zA-Z0-9_]."""
    code, negate, found = ord(char), False, False
    for op, arg in items:
        if op is sre_parse.NEGATE:
            negate = True
        elif op is sre_parse.LITERAL:
            found |= code == arg
        elif op is sre_parse.RANGE:
            found |= arg[0] <= code <= arg[1]
        elif op is sre_parse.CATEGORY:
            found |= re.fullmatch(_CATEGORY_REGEX.get(arg, r"\w"), char) is not None
    return found != negate


def _sample_char(accepts: Callable[[str], bool]) -> str:
    for char in PREFERRED_CHARS:
        if accepts(char):
            return char
    raise AssertionError("no plausible character for a URL pattern; extend PREFERRED_CHARS")


def _generate(parsed: Any) -> str:
    """A short string matching a parsed regex: one pass of `+`/`*`, the first alternative, 'x' or '1'."""
    out: list[str] = []
    for op, arg in parsed:
        if op is sre_parse.LITERAL:
            out.append(chr(arg))
        elif op is sre_parse.NOT_LITERAL:
            out.append(_sample_char(lambda c, arg=arg: ord(c) != arg))
        elif op is sre_parse.ANY:
            out.append("x")
        elif op is sre_parse.IN:
            out.append(_sample_char(lambda c, arg=arg: _in_class(arg, c)))
        elif op is sre_parse.CATEGORY:
            out.append(_sample_char(lambda c, arg=arg: re.fullmatch(_CATEGORY_REGEX[arg], c) is not None))
        elif op is sre_parse.SUBPATTERN:
            out.append(_generate(arg[-1]))
        elif op is sre_parse.BRANCH:
            out.append(_generate(arg[1][0]))
        elif op in (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None)):
            low, high, item = arg
            out.append(_generate(item) * (max(low, 1) if high else 0))
        elif op in (sre_parse.AT, sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            continue  # anchors and look-arounds consume nothing
        else:
            raise AssertionError(f"URL pattern uses a regex construct the walker does not know: {op}")
    return "".join(out)


def _regex_sample(regex: str) -> str:
    return _generate(sre_parse.parse(regex))


def _sample(element: URLPattern | URLResolver) -> str:
    pattern = element.pattern
    if isinstance(pattern, RoutePattern):
        return _route_sample(pattern)
    return _regex_sample(pattern.regex.pattern)


def walk(resolver: URLResolver, prefix: str = "/", namespace: str = "", route: str = "") -> Iterator[Endpoint]:
    """Every URLPattern reachable from `resolver`, through includes and namespaces, with a sample URL."""
    for element in resolver.url_patterns:
        url = prefix + _sample(element)
        shown = route + str(element.pattern)
        if isinstance(element, URLResolver):
            inner = f"{namespace}{element.namespace}:" if element.namespace else namespace
            yield from walk(element, url, inner, shown)
        else:
            name = f"{namespace}{element.name or '(unnamed)'}"
            yield Endpoint(url=url, view_name=name, route=shown, view=element.callback)


# --- What an anonymous visitor gets ------------------------------------------------------------


def _login_pages_for(endpoint: Endpoint) -> set[str]:
    """The site's login page; admin views send visitors to the admin's own login page instead."""
    pages = {resolve_url(settings.LOGIN_URL)}
    if endpoint.view_name.startswith("admin:"):
        pages.add(resolve_url("admin:login"))
    return pages


def _is_login_redirect(response: HttpResponse, endpoint: Endpoint) -> bool:
    if response.status_code != 302:
        return False
    location = urlsplit(response["Location"])
    return location.path in _login_pages_for(endpoint) and parse_qs(location.query).get("next") == [endpoint.url]


def unprotected(endpoints: list[Endpoint]) -> list[str]:
    """Endpoints an anonymous GET reaches without being sent to log in or refused."""
    client = Client(raise_request_exception=False)
    leaks = []
    for endpoint in endpoints:
        if endpoint.view_name in PUBLIC_VIEW_NAMES or endpoint.url.startswith(PUBLIC_PREFIXES):
            continue
        response = client.get(endpoint.url)
        if _is_login_redirect(response, endpoint) or response.status_code in REFUSALS:
            continue
        where = response.get("Location", "")
        leaks.append(
            f"{endpoint.url} ({endpoint.view_name}, route {endpoint.route!r}) → {response.status_code} {where}"
        )
    return leaks


def _endpoints() -> list[Endpoint]:
    return list(walk(get_resolver()))


# --- The project's own URL conf --------------------------------------------------------------


def test_the_walker_builds_a_url_that_resolves_to_each_pattern() -> None:
    endpoints = _endpoints()

    assert {e.view_name for e in endpoints} >= {"login", "usage:overview", "admin:index", "admin:app_list"}
    for endpoint in endpoints:
        match = resolve(endpoint.url)
        # django-ninja gives each operation of one path (GET and POST /api/v1/budgets) a pattern of
        # its own, with views that dispatch by method to the same operations: the first answers.
        same_api_path = endpoint.view_name.startswith("api:") and match.route == endpoint.route
        assert match.func is endpoint.view or same_api_path, endpoint


def test_anonymous_visitors_reach_no_page_but_the_login_pages(db: None) -> None:
    assert unprotected(_endpoints()) == []


def test_the_login_pages_open_for_anonymous_visitors(db: None) -> None:
    client = Client()

    assert client.get(resolve_url("login")).status_code == 200
    assert client.get(resolve_url("admin:login")).status_code == 200


def test_a_logged_in_user_without_a_role_is_refused_the_overview(roleless_client: Client, account: Any) -> None:
    assert roleless_client.get(resolve_url("usage:overview")).status_code == 403


@pytest.mark.parametrize("client_fixture", ["finance_client", "engineer_client"])
def test_finance_and_engineers_open_the_overview(
    client_fixture: str, account: Any, request: pytest.FixtureRequest
) -> None:
    client: Client = request.getfixturevalue(client_fixture)

    assert client.get(resolve_url("usage:overview")).status_code == 200


# --- The walker itself catches a view without protection ----------------------------------


@login_not_required
def _leaky_view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    return HttpResponse("secrets for everyone")


def _project_urls_with_leaks() -> ModuleType:
    """The project's URL conf plus two unprotected views, one deep in a namespaced include."""
    urlconf = ModuleType("urls_with_leaks")
    nested = ([path("<int:pk>/report/", _leaky_view, name="report")], "leaky")
    urlconf.urlpatterns = [  # type: ignore[attr-defined]
        *toki_dashboard.urls.urlpatterns,
        path("leak/", _leaky_view, name="leak"),
        path("teams/<slug:team>/", include(nested)),
    ]
    return urlconf


def test_an_unprotected_view_is_caught_by_the_walker(db: None, settings: Any) -> None:
    settings.ROOT_URLCONF = _project_urls_with_leaks()

    leaks = unprotected(_endpoints())

    assert [leak.split(" ")[0] for leak in leaks] == ["/leak/", "/teams/x/1/report/"]
    assert "leaky:report" in leaks[1]
