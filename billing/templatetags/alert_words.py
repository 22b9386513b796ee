"""Alert texts in the reader's language.

What a rule said (a summary, a notification's subject and rows) is worded when it is measured,
in every language of the site (`billing.alert_texts`), and stored beside the figures: a page
or an email shows the wording of its own language, and rows stored before that (no wording
per language) show as they were written.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.translation import get_language

from billing.alert_texts import language_name as _language_name
from billing.alert_texts import rule_name as _rule_name
from billing.alert_texts import severity_name, worded_in

register = template.Library()


@register.simple_tag
def worded(stored: Any, key: str, fallback: str) -> str:
    """The text `key` ("summary", "subject") of stored details in the active language."""
    return worded_in(stored, key, fallback, get_language())


@register.filter
def severity(value: str) -> str:
    """ "warning", "high", "critical", "ok" in the reader's words."""
    return severity_name(value)


@register.filter
def rule_name(rule: Any) -> str:
    """A budget's or a standard rule's name in the reader's language; any other name as written."""
    return _rule_name(rule) if rule else ""


@register.filter
def language_name(code: str) -> str:
    return _language_name(code)
