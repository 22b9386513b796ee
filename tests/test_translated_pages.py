"""Every translated page, rendered in Simplified Chinese, shows no label of the message catalogue
left in English.

The catalogue (locale/zh_Hans/LC_MESSAGES/django.po) lists every string marked for translation;
a page rendered in zh-hans must contain none of them in their English form, in its visible text
or in the titles and aria-labels a screen reader speaks. The same page in English shows those
labels, which proves the check finds them when they are there.

Pages whose labels are not marked yet are listed in NOT_TRANSLATED_YET (their URL names): the
gap is visible here rather than hidden in a skip. A page moves from that list to PAGES when its
templates and the Python that words it are marked and translated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.test import Client
from django.urls import get_resolver, reverse
from django.utils import timezone

from billing.audit import Actor
from billing.models import WalletEntryKind
from billing.services import PurchaseData, WalletEntryData, record_purchase, record_wallet_entry
from toki_dashboard.roles import Role
from usage.catalogue.models import CatalogueModel, CatalogueOutcome, CatalogueSync, CatalogueTrigger
from usage.models import (
    ApiKey,
    EstimatorFit,
    ImportJob,
    ImportRejection,
    Membership,
    ModelPrice,
    RateSource,
    UsageRecord,
)
from usage.pricing.services import set_exchange_rate
from usage.schemas import validate_records
from usage.services import record_usage

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
CHINESE = re.compile("[\u4e00-\u9fff]")
PRODUCT_NAMES = ("TOKI Dashboard", "New API")  # stay as they are in every language

THIS_MONTH = "?month=this"  # a page asked for the month the usage is in
MODEL = "gpt-4o"  # the model of the usage recorded, whose page and cards are shown
REMOVED_MODEL = "gpt-4-legacy"  # used, and removed from the provider's list
FAILED_REQUEST = "translated-quota"  # the request whose page is shown: a failure
MODEL_CARDS = ("usage", "latency", "errors", "top", "recent", "estimator", "catalogue")

# (URL name, role of the client, with usage recorded or not): the pages translated so far.
PAGES = [
    ("usage:overview", "finance", True),
    ("usage:overview", "finance", False),  # the empty state
    ("usage:overview", "engineer", True),
    ("usage:spend", "finance", True),
    ("usage:spend", "finance", False),
    ("billing:plans", "finance", True),
    ("billing:plans", "finance", False),
    ("billing:reports", "finance", True),  # the last complete month: empty
    ("billing:reports", "finance", False),
    ("usage:overview_spend_chart", "finance", True),  # the Overview's chart card, opened on its own
    ("usage:exchange_rates", "finance", True),
    ("usage:imports", "finance", True),
    ("billing:balance_card", "finance", True),  # the Overview's balance card, opened on its own
    ("billing:forecast_chart", "finance", True),  # the Plans page's forecast card, opened on its own
    ("billing:reports" + THIS_MONTH, "finance", True),  # the current month: its wallet lines
    ("usage:models", "engineer", True),  # with a model the provider removed, still in use
    ("usage:models", "engineer", False),
    ("usage:model_detail", "engineer", True),
    *[(f"usage:model_card/{card}", "engineer", True) for card in MODEL_CARDS],  # each card opened on its own
    ("usage:catalogue", "engineer", True),  # synced, then a failed sync; capabilities seen
    ("usage:catalogue", "engineer", False),
    ("usage:requests", "engineer", True),
    ("usage:requests", "engineer", False),
    ("usage:request_detail", "engineer", True),  # a failed request: why, and the remedy
    ("usage:errors", "engineer", True),  # causes, unsupported parameters, the chart, the remedies
    ("usage:errors", "engineer", False),
    ("usage:keys", "engineer", True),
    ("usage:keys", "engineer", False),
    ("usage:key_edit", "engineer", True),
    ("usage:teams", "finance", True),
    ("usage:teams", "engineer", False),  # no key, no team: the empty list
]

# URL names of pages whose labels are not marked for translation yet (the header and the
# navigation around them are). Listed, not skipped: this is the work left.
NOT_TRANSLATED_YET = [
    "usage:settings",
    "usage:token_create",
    "usage:token_revoke",
    "usage:prices",
    "usage:accounts",
    "billing:budgets",
    "billing:edit_budget",
    "billing:alerts",
    "billing:edit_alert_rule",
    "alert emails (billing/email)",  # sent to addresses, not users: which language is still to decide
    "CSV exports' column labels",  # kept as stable English identifiers for scripts and spreadsheets
]
NOT_PAGES = ("api:", "admin:", "proxy:")  # JSON, the Django admin, the proxy
TESTED_ELSEWHERE = {"usage:import_detail", "login"}  # below, with their own objects and states


def test_every_page_is_either_tested_in_chinese_or_listed_as_not_translated_yet() -> None:
    """A page added to the URL conf is either translated (and tested above) or joins the list."""
    from tests.test_access_matrix import rule_for
    from tests.test_authentication_required import walk

    covered = {_url_name(page) for page, _, _ in PAGES} | set(NOT_TRANSLATED_YET) | TESTED_ELSEWHERE
    pages = set()
    for endpoint in walk(get_resolver()):
        rule = rule_for(endpoint)
        if rule is None or endpoint.view_name.startswith(NOT_PAGES) or endpoint.view_name in {"metrics", "logout"}:
            continue  # not HTML: JSON, the admin, the proxy, metrics; logging out is a POST
        if rule.method == "get" and not endpoint.view_name.endswith("_csv"):
            pages.add(endpoint.view_name)
    assert sorted(pages - covered) == []


class _VisibleText(HTMLParser):
    """The text a reader sees or hears: text nodes outside script/style, titles and aria-labels."""

    HIDDEN = {"script", "style", "template"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self._hidden += 1
        self.parts.extend(value for name, value in attrs if name in {"title", "aria-label", "placeholder"} and value)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN and self._hidden:
            self._hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    text = " ".join(" ".join(parser.parts).split())
    for name in PRODUCT_NAMES:
        text = text.replace(name, "")
    return text


FIGURE = re.compile(r'<script id="[^"]*" type="application/json">(.*?)</script>', re.S)
FIGURE_WORDS = {"name", "text", "hovertemplate"}  # legends, titles, annotations, hover labels


def chart_text(html: str) -> str:
    """The words of the page's charts, which Python builds and the page embeds as JSON: legends,
    axis titles, annotations and hover labels (without plotly's markup and %{…} placeholders)."""
    words: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in FIGURE_WORDS and isinstance(value, str):
                    words.append(value)
                elif key in FIGURE_WORDS and isinstance(value, list):
                    words.extend(item for item in value if isinstance(item, str))
                else:
                    collect(value)
        elif isinstance(node, list):
            for item in node:
                collect(item)

    for figure in FIGURE.findall(html):
        collect(json.loads(figure))
    return " ".join(" ".join(re.sub(r"<[^>]+>|%\{[^}]*\}", " ", word) for word in words).split())


def _pattern(msgid: str) -> re.Pattern[str]:
    """A msgid as it reads on a page: its HTML tags gone, each placeholder what it stands for."""
    text = " ".join(re.sub(r"<[^>]+>", "", msgid).split())
    # {% blocktranslate count %}'s counter is always a number ("3 teams"); any other placeholder any text.
    parts = re.split(r"(%\(\w+\)[sd])", text)
    body = "".join(
        (r"\d[\d,.]*" if part == "%(counter)s" else r".+?") if i % 2 else re.escape(part)
        for i, part in enumerate(parts)
    )
    # Not part of a longer word, nor of a dotted identifier such as the audit action "wallet.recorded".
    return re.compile(rf"(?<![\w&.]){body}(?![\w]|\.\w)")


def catalogue_labels() -> dict[str, re.Pattern[str]]:
    with CATALOGUE.open("rb") as fh:
        catalogue = read_po(fh)
    labels: dict[str, re.Pattern[str]] = {}
    for message in catalogue:
        if not message.id:
            continue
        for msgid in (message.id,) if isinstance(message.id, str) else message.id:
            # A placeholder alone or with punctuation says nothing in English ("+%(shown)s").
            if re.search(r"[A-Za-z]{2,}", re.sub(r"%\(\w+\)[sd]", "", msgid)):
                labels[msgid] = _pattern(msgid)
    return labels


def english_labels_in(text: str, labels: dict[str, re.Pattern[str]]) -> list[str]:
    return sorted(msgid for msgid, pattern in labels.items() if pattern.search(text))


@pytest.fixture
def clients(make_user, account) -> dict[str, Client]:
    clients = {}
    for role in (Role.FINANCE, Role.ENGINEER):
        user = make_user(f"reader-{role.value}", role)
        Membership.objects.get_or_create(account=account, user=user)
        client = Client()
        client.force_login(user)
        clients[role.value] = client
    return clients


def _record_usage(account) -> None:
    today = timezone.now()
    valid, rejected = validate_records(
        [
            {
                "request_id": f"translated-{n}",
                "occurred_at": today.isoformat(),
                "model": "gpt-4o",
                "api_key": "name:checkout",
                "metadata": {"team": "growth"},
                "usage": {"prompt_tokens": 1200 * n, "completion_tokens": 300 * n},
            }
            for n in range(1, 4)
        ]
    )
    assert rejected == []  # every record is stored: the pages show them
    record_usage(account, valid, source="api")
    # Exchange rates: one in effect and one replaced by a later entry for the same moment.
    for rate in ("7.10", "7.12"):
        set_exchange_rate(
            from_currency="USD",
            to_currency="CNY",
            rate=Decimal(rate),
            effective_from=today - timedelta(days=2),
            source=RateSource.DASHBOARD,
        )
    # Plans & wallet shows its tables only with a purchase and a ledger entry.
    finance = Actor.system("tests")
    record_purchase(
        account,
        PurchaseData(
            plan="Pro 50M",
            tokens=50_000_000,
            price=Decimal("400"),
            currency=account.currency,
            effective_at=today - timedelta(days=1),
            expires_at=today + timedelta(days=30),
            idempotency_key="translated-purchase",
        ),
        finance,
    )
    record_wallet_entry(
        account,
        WalletEntryData(
            kind=WalletEntryKind.TOP_UP,
            amount=Decimal("100"),
            currency=account.currency,
            occurred_at=today,
            idempotency_key="translated-top-up",
            note="invoice 2026-031",
        ),
        finance,
    )


def _url_name(page: str) -> str:
    """A PAGES entry's URL name: without THIS_MONTH, or the card after "/"."""
    return page.removesuffix(THIS_MONTH).partition("/")[0]


def _url(page: str) -> str:
    """A PAGES entry's URL: a page about one object shows one _record_usage stored."""
    name, _, card = page.removesuffix(THIS_MONTH).partition("/")
    args: dict[str, Callable[[], list[object]]] = {
        "usage:model_detail": lambda: [MODEL],
        "usage:model_card": lambda: [MODEL, card],
        "usage:request_detail": lambda: [UsageRecord.objects.get(request_id=FAILED_REQUEST).pk],
        "usage:key_edit": lambda: [ApiKey.objects.get(name="checkout").pk],
    }
    url = reverse(name, args=args[name]() if name in args else [])
    if page.endswith(THIS_MONTH):
        url += f"?month={timezone.localdate(timezone=ZoneInfo(settings.DASHBOARD_TIME_ZONE)):%Y-%m}"
    return url


def _record_engineering_usage(account) -> None:
    """What the engineers' pages show beyond plain successes: failures of two causes (one with the
    parameters the model rejected), an estimated request, calls that proved streaming and tools,
    a model the provider removed yet still called, the catalogue's syncs (the last one failed), a
    key's status at the provider and a calibrated estimator fit."""
    now = timezone.now()
    call = {"occurred_at": now.isoformat(), "model": MODEL, "api_key": "name:checkout", "metadata": {"team": "growth"}}
    # The model's price history: a price from the start, replaced by today's (which prices these records).
    since = now - timedelta(days=30)
    for start, end, price in ((datetime(2000, 1, 1, tzinfo=UTC), since, "5"), (since, None, "2.5")):
        ModelPrice.objects.create(
            model_pattern=MODEL,
            input_per_mtok=Decimal(price),
            cached_input_per_mtok=Decimal("1.25"),
            output_per_mtok=Decimal("10"),
            effective_from=start,
            effective_to=end,
        )
    valid, rejected = validate_records(
        [
            call
            | {
                "request_id": FAILED_REQUEST,
                "status_code": 429,
                "error": {"type": "insufficient_quota", "message": "You exceeded your current quota."},
                "latency_ms": 180,
            },
            *[
                call
                | {
                    "request_id": f"translated-parameter-{n}",
                    "status_code": 400,
                    "error": {"type": "invalid_request_error", "code": "unsupported_parameter"},
                    "parameters": names,
                }
                for n, names in enumerate((["logit_bias", "temperature"], ["logit_bias"]))
            ],
            call
            | {
                "request_id": "translated-streamed",
                "stream": True,
                "parameters": ["stream", "tools"],
                "usage": {"prompt_tokens": 800, "completion_tokens": 200},
                "latency_ms": 2400,
                "ttft_ms": 300,
            },
            call | {"request_id": "translated-estimated", "context_chars": 4000, "output_chars": 900},
            call | {"request_id": "translated-legacy", "model": REMOVED_MODEL, "usage": {"prompt_tokens": 10}},
        ]
    )
    assert rejected == []  # every record is stored: the pages show them
    record_usage(account, valid, source="api")
    ApiKey.objects.filter(account=account, name="checkout").update(provider_status="enabled")
    CatalogueModel.objects.create(account=account, name=MODEL, owned_by="openai", context_length=128_000)
    CatalogueModel.objects.create(
        account=account, name=REMOVED_MODEL, first_seen_at=now - timedelta(days=90), removed_at=now - timedelta(days=1)
    )
    CatalogueSync.objects.create(
        account=account,
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=2),
        outcome=CatalogueOutcome.SUCCESS,
        source="/api/pricing",
        models_listed=1,
        removed=1,
    )
    CatalogueSync.objects.create(
        account=account,
        trigger=CatalogueTrigger.MANUAL,
        started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=5),
        outcome=CatalogueOutcome.CREDENTIALS_REJECTED,
        error="401 invalid token",
    )
    EstimatorFit.objects.create(
        scope=MODEL,
        kind=EstimatorFit.Kind.PROFILE,
        weights={},
        samples=400,
        holdout_samples=97,
        median_error=0.026,
        p90_error=0.1,
        fallback_median_error=0.12,
        fallback_p90_error=0.28,
        active=True,
    )


@pytest.mark.parametrize(("page", "role", "with_usage"), PAGES)
def test_a_translated_page_in_chinese_leaves_no_catalogue_label_in_english(
    clients, account, page: str, role: str, with_usage: bool
) -> None:
    if with_usage:
        _record_usage(account)
        _record_engineering_usage(account)
    labels = catalogue_labels()
    url = _url(page)

    chinese = clients[role].get(url, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    english = clients[role].get(url, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")

    assert chinese.status_code == english.status_code == 200
    chinese_text = visible_text(chinese.text)
    assert CHINESE.search(chinese_text)
    assert english_labels_in(chinese_text, labels) == []
    # The check sees labels when they are there: the English page shows many of them.
    assert len(english_labels_in(visible_text(english.text), labels)) >= 10
    # The charts' words too: in Chinese when the page has a chart, as in English they are English.
    charts = chart_text(chinese.text)
    assert english_labels_in(charts, labels) == []
    assert bool(CHINESE.search(charts)) == bool(english_labels_in(chart_text(english.text), labels))


@pytest.mark.parametrize("state", ["running", "done"])
def test_an_import_in_chinese_leaves_no_catalogue_label_in_english(clients, account, state: str) -> None:
    job = ImportJob.objects.create(
        account=account,
        file_name="usage.csv",
        size_bytes=2048,
        format="csv",
        state=state,
        rows_read=1500,
        stored=1490,
        duplicates=5,
        rejected=5,
        skipped=2,
        bytes_read=1024,
        rate=750.0,
        seconds_left=2.0,
        started_at=timezone.now(),
        finished_at=timezone.now() if state == "done" else None,
    )
    for line in range(2, 7):
        ImportRejection.objects.create(
            job=job, position=line, field="occurred_at" if line % 2 else "", reason="invalid"
        )
    labels = catalogue_labels()
    url = reverse("usage:import_detail", args=[job.pk])

    chinese = visible_text(clients["finance"].get(url, HTTP_ACCEPT_LANGUAGE="zh-CN").text)
    english = visible_text(clients["finance"].get(url, HTTP_ACCEPT_LANGUAGE="en-US").text)

    assert CHINESE.search(chinese)
    assert english_labels_in(chinese, labels) == []
    assert len(english_labels_in(english, labels)) >= 10


def test_the_engineers_messages_after_saving_are_in_chinese(clients, account) -> None:
    """Renaming a key and asking for a sync of the model list: the page they return to says so in Chinese."""
    _record_usage(account)
    key = ApiKey.objects.get(account=account, name="checkout")
    labels = catalogue_labels()
    client = clients["engineer"]

    renamed = client.post(
        reverse("usage:key_edit", args=[key.pk]),
        {"name": "checkout-prod", "team": key.team},  # renamed, its team kept: no move to report
        HTTP_ACCEPT_LANGUAGE="zh-CN",
        follow=True,
    )
    synced = client.post(reverse("billing:sync_models_now"), HTTP_ACCEPT_LANGUAGE="zh-CN", follow=True)

    assert "已保存密钥“checkout-prod”。" in visible_text(renamed.text)
    assert "已请求同步 Acme 的模型列表" in visible_text(synced.text)
    for page in (renamed, synced):
        assert english_labels_in(visible_text(page.text), labels) == []


# Pages outside the URL conf's normal answers: (who asks, path, status).
SPECIAL_PAGES = [
    ("anonymous", "/login/", 200),  # the browser's language: nobody has chosen yet
    ("engineer", "/plans/", 403),  # a role that is missing, named with who can give it
    ("finance", "/no-such-page/", 404),
]


@pytest.mark.parametrize(("who", "path", "status"), SPECIAL_PAGES)
def test_sign_in_and_error_pages_in_chinese_leave_no_catalogue_label_in_english(
    clients, make_user, who: str, path: str, status: int
) -> None:
    make_user("root", Role.ADMIN)  # the administrator a 403 names
    client = Client() if who == "anonymous" else clients[who]
    labels = catalogue_labels()

    chinese = client.get(path, HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    english = client.get(path, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")

    assert chinese.status_code == english.status_code == status
    chinese_text = visible_text(chinese.text)
    assert CHINESE.search(chinese_text)
    assert english_labels_in(chinese_text, labels) == []
    assert len(english_labels_in(visible_text(english.text), labels)) >= 3


def test_every_label_of_the_catalogue_has_a_chinese_translation() -> None:
    with CATALOGUE.open("rb") as fh:
        catalogue = read_po(fh)
    untranslated = [
        message.id
        for message in catalogue
        if message.id
        and (message.fuzzy or not all(message.string if isinstance(message.string, tuple) else (message.string,)))
    ]
    assert untranslated == []


def _hashable(value: object) -> object:
    return tuple(value) if isinstance(value, (list, tuple)) else value


def test_the_compiled_catalogue_is_up_to_date_with_the_po_file() -> None:
    """The .mo is committed (no gettext needed to run the site): it must say what the .po says."""
    from babel.messages.mofile import read_mo

    with CATALOGUE.open("rb") as fh:
        po = {_hashable(m.id): _hashable(m.string) for m in read_po(fh) if m.id}
    with CATALOGUE.with_suffix(".mo").open("rb") as fh:
        mo = {_hashable(m.id): _hashable(m.string) for m in read_mo(fh) if m.id}
    assert mo == po


def test_numbers_and_dates_are_written_the_way_each_language_writes_them(clients, account) -> None:
    _record_usage(account)
    today = timezone.localdate(timezone=ZoneInfo(settings.DASHBOARD_TIME_ZONE))
    url = reverse("billing:plans")

    chinese = visible_text(clients["finance"].get(url, HTTP_ACCEPT_LANGUAGE="zh-CN").text)
    english = visible_text(clients["finance"].get(url, HTTP_ACCEPT_LANGUAGE="en-US").text)

    # The ledger's month heading: "2026年12月" in Chinese, "December 2026" in English.
    assert f"{today.year}年{today.month}月" in chinese and f"{today:%B %Y}" not in chinese
    assert f"{today:%B %Y}" in english
    # The purchase's tokens, grouped by thousands with a comma in both (not Django's ungrouped zh-hans).
    assert "50,000,000" in chinese and "50000000" not in chinese
    assert "50,000,000" in english
