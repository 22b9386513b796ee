"""Alert texts in every language of the site, and which language each delivery speaks.

A rule's figures are measured once; its wording (the summary, the subject line, the rows of
numbers) is written lazily (`later`) and then, when the figures are stored, rendered in each
language of `settings.LANGUAGES` (`wordings`). The stored details keep the site language's
wording where they always had it (`summary`, `rows`: what webhooks and older readers read)
and every language's under `texts`, so a page, an email or a chat message shows the one of
its reader without measuring again: the figures are the same in every language.

Who reads which language: an alert channel carries the language chosen when it was added
(`AlertChannel.language`; empty: the site's LANGUAGE_CODE); a rule's own recipients are
members of the account, each told in the language they chose for the dashboard
(`usage.models.UserLanguage`), else the site's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.functions import Lower
from django.utils.functional import lazy
from django.utils.translation import gettext, override
from django.utils.translation import gettext_lazy as _

SEVERITY_NAMES = {
    "ok": _("ok"),
    "warning": _("warning"),
    "high": _("high"),
    "critical": _("critical"),
}


# The error causes an error-surge rule can watch, in the reader's words (usage.models.ErrorCause
# labels are English; the Errors page words them itself).
ERROR_CAUSE_NAMES = {
    "invalid_api_key": _("Invalid API key"),
    "key_disabled": _("Key disabled"),
    "insufficient_quota": _("Insufficient quota"),
    "model_unavailable": _("Model unavailable"),
    "unsupported_parameter": _("Unsupported parameter"),
    "rate_limited": _("Rate limited"),
    "upstream_error": _("Upstream error"),
    "timeout": _("Timeout"),
    "client_cancelled": _("Cancelled by client"),
    "other": _("Other error"),
}


def later(words: Callable[[], str]) -> str:
    """A text written when it is read, in the language active then (figures fixed now)."""
    return lazy(words, str)()


def site_language() -> str:
    return settings.LANGUAGE_CODE


def language_codes() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def supported(code: str | None) -> str:
    """`code` if the site speaks it, else the site's language."""
    return code if code in language_codes() else site_language()


def language_name(code: str) -> str:
    names = dict(settings.LANGUAGES)
    return names.get(supported(code), code)


def rule_name(rule: Any) -> str:
    """A rule's name in the active language: a budget's rule is "Budget <its name>", a standard
    rule (`billing.alert_defaults`) keeps its translated name until someone renames it; a name
    someone gave is shown as written."""
    from billing.alert_defaults import DEFAULT_RULES
    from billing.models import AlertKind

    name = str(rule.name)
    budget = rule.budget if rule.kind == AlertKind.BUDGET and rule.budget_id else None
    if budget is not None and name == f"Budget {budget.name}":  # as billing.budgets.services names it
        return gettext("Budget %(name)s") % {"name": budget.name}
    return gettext(name) if name in {default for default, _kind, _tier in DEFAULT_RULES} else name


def summary_texts(summary: Any) -> dict[str, Any]:
    """A summary in every language, stored as details are (`worded_in` reads both)."""
    return {"texts": wordings(summary, [])}


def severity_name(value: str) -> str:
    return str(SEVERITY_NAMES.get(value, value))


def in_site_language(text: Any) -> str:
    with override(site_language()):
        return str(text)


def _rows(rows: Iterable[Sequence[Any]]) -> list[list[str]]:
    return [[str(label), str(value)] for label, value in rows]


def wordings(summary: Any, rows: Iterable[Sequence[Any]], subject: Any = None) -> dict[str, dict[str, Any]]:
    """Each language's wording of a summary, its rows and (if given) a subject line."""
    rows = list(rows)
    texts: dict[str, dict[str, Any]] = {}
    for code in language_codes():
        with override(code):
            texts[code] = {"summary": str(summary), "rows": _rows(rows)}
            if subject is not None:
                texts[code]["subject"] = str(subject)[:300]
    return texts


def stored_details(summary: Any, rows: Iterable[Sequence[Any]], **more: Any) -> dict[str, Any]:
    """Details to store: the site language's wording where it always was, every language's in `texts`."""
    rows = list(rows)
    with override(site_language()):
        details = {"rows": _rows(rows), "summary": str(summary), **more}
    details["texts"] = wordings(summary, rows)
    return details


def add_subject(details: dict[str, Any], subject: Any) -> str:
    """Word the subject line in every language into `details`; returns the site language's."""
    for code, texts in (details.get("texts") or {}).items():
        with override(code):
            texts["subject"] = str(subject)[:300]
    return in_site_language(subject)[:300]


def prepend_row(details: dict[str, Any], label: Any, value: Any) -> None:
    """A row before the others, in every language."""
    details["rows"] = [[in_site_language(label), in_site_language(value)], *details.get("rows", [])]
    for code, texts in (details.get("texts") or {}).items():
        with override(code):
            texts["rows"] = [[str(label), str(value)], *texts.get("rows", [])]


def worded_in(stored: Any, key: str, fallback: Any, language: str | None) -> Any:
    """The text `key` of stored details in `language`; `fallback` for details stored before
    they were worded per language."""
    texts = (stored or {}).get("texts") if isinstance(stored, dict) else None
    if not texts:
        return fallback
    entry = texts.get(supported(language)) or texts.get(site_language()) or {}
    value = entry.get(key)
    return value if value not in (None, "") else fallback


def languages_of(addresses: Iterable[str]) -> dict[str, list[str]]:
    """Addresses grouped by the language their user chose for the dashboard (else the site's),
    in the order given."""
    addresses = list(addresses)
    chosen: dict[str, str] = {}
    users = (
        get_user_model()
        .objects.annotate(address=Lower("email"))
        .filter(address__in=[a.lower() for a in addresses])
        .exclude(language_choice=None)
    )
    for email, language in users.values_list("email", "language_choice__language"):
        chosen[email.lower()] = language
    groups: dict[str, list[str]] = {}
    for address in addresses:
        groups.setdefault(supported(chosen.get(address.lower())), []).append(address)
    return groups
