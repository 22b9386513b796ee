"""Server time of every dashboard page with the benchmark data (bench/README.md).

    .venv/bin/python bench/generate.py --reset        # once: 1,000,000 records in toki_bench
    .venv/bin/python bench/pages.py [--repeat 30] [--account bench] [--only NAME]
                                    [--database-url postgres://toki:toki@127.0.0.1:5432/toki_bench]

In-process, through Django's test Client (the whole middleware stack, templates and
database; no network), logged in as a user of the role each page needs, production
settings (DEBUG off). Each page is requested a few times to warm up, then --repeat
times timed; p50, p95 and max are printed with the SQL queries one request makes.

Pages come from the navigation (toki_dashboard.context_processors.NAVIGATION) plus the
detail and fragment URLs below; names that do not resolve yet are skipped and listed,
so the script can simply be run again when they exist. The request log is measured on
its first page and deep in the log (a keyset cursor 90% of the way through the period).

Targets: p95 ≤ 150 ms for every page; the request log ≤ 100 ms at any depth.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import BENCH_DATABASE_URL, MODELS, machine, percentile, setup_django

PAGE_TARGET_MS = 150.0
LOG_TARGET_MS = 100.0
WARM_UP = 3


@dataclass
class PageSpec:
    label: str
    url_name: str
    role: str
    args: Callable[[], list[Any]] = lambda: []
    query: Callable[[], dict[str, str]] = dict
    htmx: bool = False
    target_ms: float = PAGE_TARGET_MS


def specs(account: Any) -> list[PageSpec]:
    """Every page to time: the navigation, then details and fragments."""
    return _navigation_specs() + _detail_specs(account) + _card_specs()


def _navigation_specs() -> list[PageSpec]:
    """Each page of the navigation, as a role that may see it (engineer first)."""
    from toki_dashboard.context_processors import NAVIGATION
    from toki_dashboard.roles import Role

    def role_for(allowed: frozenset[Role]) -> str:
        for role in (Role.ENGINEER, Role.FINANCE, Role.ADMIN):
            if role in allowed:
                return role.value
        return Role.ADMIN.value

    result = [PageSpec(label, name, role_for(allowed)) for label, name, allowed in NAVIGATION]
    for spec in result:
        if spec.url_name == "usage:requests":
            spec.label, spec.target_ms = "Requests (first page)", LOG_TARGET_MS
    return result


def _detail_specs(account: Any) -> list[PageSpec]:
    """Pages off the navigation: the request log deep and filtered, details, fragments, exports."""
    from toki_dashboard.roles import Role

    top_model = MODELS[0][0]
    engineer, finance, admin = Role.ENGINEER.value, Role.FINANCE.value, Role.ADMIN.value
    return [
        PageSpec(
            "Requests, deep (90% into 30 days)",
            "usage:requests",
            engineer,
            query=lambda: _deep_cursor(account, 30),
            target_ms=LOG_TARGET_MS,
        ),
        PageSpec(
            "Requests, filtered by model",
            "usage:requests",
            engineer,
            query=lambda: {"model": top_model},
            target_ms=LOG_TARGET_MS,
        ),
        PageSpec(
            "Requests, failed only, deep",
            "usage:requests",
            engineer,
            query=lambda: {"failed": "1", **_deep_cursor(account, 30)},
            target_ms=LOG_TARGET_MS,
        ),
        PageSpec("Request detail", "usage:request_detail", engineer, args=lambda: _newest_pk(account)),
        PageSpec("Overview spend chart (fragment)", "usage:overview_spend_chart", finance, htmx=True),
        PageSpec("Overview, 60 days", "usage:overview", finance, query=lambda: {"period": "custom", **_days(60)}),
        PageSpec("Model detail", "usage:model_detail", engineer, args=lambda: [top_model]),
        PageSpec("Plans balance card (fragment)", "billing:balance_card", finance, htmx=True),
        PageSpec("Plans forecast chart (fragment)", "billing:forecast_chart", finance, htmx=True),
        PageSpec("Report CSV (latest month)", "billing:report_csv", finance, args=lambda: _latest_month(account)),
        PageSpec("Settings: prices", "usage:prices", admin),
        PageSpec("Settings: accounts", "usage:accounts", admin),
    ]


def _card_specs() -> list[PageSpec]:
    """Each card of the model page, as the fragment htmx loads."""
    from toki_dashboard.roles import Role

    try:
        from usage.views.models import CARDS
    except ImportError:
        CARDS = {}
    top_model = MODELS[0][0]
    return [
        PageSpec(
            f"Model card: {title} (fragment)",
            "usage:model_card",
            Role.ENGINEER.value,
            args=lambda c=card: [top_model, c],
            htmx=True,
        )
        for card, title in CARDS.items()
    ]


def _deep_cursor(account: Any, days: int) -> dict[str, str]:
    """The request log's cursor 90% of the way through the last `days` days of records."""
    from usage.models import UsageRecord
    from usage.selectors.requestlog import encode_cursor

    newest = UsageRecord.objects.filter(account=account).order_by("-occurred_at", "-id").first()
    if newest is None:
        return {}
    since = newest.occurred_at - timedelta(days=days)
    in_period = UsageRecord.objects.filter(account=account, occurred_at__gte=since).count()
    deep = (
        UsageRecord.objects.filter(account=account, occurred_at__gte=since)
        .order_by("-occurred_at", "-id")
        .only("id", "occurred_at")[int(in_period * 0.9)]
    )
    return {"after": encode_cursor(deep)}


def _newest_pk(account: Any) -> list[Any]:
    from usage.models import UsageRecord

    return [UsageRecord.objects.filter(account=account).order_by("-occurred_at", "-id").values_list("pk")[0][0]]


def _latest_month(account: Any) -> list[Any]:
    from usage.models import UsageRecord

    newest = UsageRecord.objects.filter(account=account).order_by("-occurred_at").values_list("occurred_at")
    return [newest[0][0].strftime("%Y-%m")]


def _days(days: int) -> dict[str, str]:
    from django.utils import timezone

    today = timezone.localdate()
    return {"start": (today - timedelta(days=days - 1)).isoformat(), "end": today.isoformat()}


def clients(account: Any) -> dict[str, Any]:
    """A logged-in client per role, each user a member of `account`."""
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from toki_dashboard.roles import Role
    from usage.models import Membership

    result = {}
    for role in Role:
        user, _ = User.objects.get_or_create(username=f"bench-{role.value}")
        user.groups.set([Group.objects.get_or_create(name=role.value)[0]])
        Membership.objects.get_or_create(account=account, user=user)
        client = Client()
        client.force_login(user)
        result[role.value] = client
    return result


# (label, URL, status, queries, p50, p95, max, target) of one page
Timing = tuple[str, str, int, int, float, float, float, float]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page (default 30)")
    parser.add_argument("--account", default="bench")
    parser.add_argument("--only", help="time only pages whose label or URL name contains this")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", BENCH_DATABASE_URL))
    args = parser.parse_args()

    setup_django(args.database_url)
    account = _bench_account(args.account)
    by_role = clients(account)

    skipped: list[str] = []
    rows: list[Timing] = []
    header = f"{'page':46} {'status':>6} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target"
    print(header)
    for spec in specs(account):
        if args.only and args.only not in spec.label and args.only not in spec.url_name:
            continue
        url = _url(spec, account, skipped)
        if url is not None:
            rows.append(_time_page(spec, url, by_role[spec.role], args.repeat))
    if skipped:
        print(f"\nskipped (URL names that do not resolve yet, or no data): {', '.join(skipped)}")
    missed = [r for r in rows if r[5] > r[7]]
    print(f"\n{len(rows)} pages timed, {len(missed)} over target.")
    for label, url, *_ in missed:
        print(f"  over target: {label}  {url}")


def _bench_account(slug: str) -> Any:
    """The benchmark's account, with production's static files collected; says what is measured."""
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import setup_test_environment

    from usage.models import Account, UsageRecord

    setup_test_environment()  # the test Client's templates and host checks, nothing else
    call_command("collectstatic", interactive=False, verbosity=0)  # production's hashed static names
    account = Account.objects.filter(slug=slug).first()
    if account is None:
        sys.exit(f"No account {slug!r}: run bench/generate.py first.")
    records = UsageRecord.objects.filter(account=account).count()
    print(f"machine: {machine()}")
    print(f"database: {connection.vendor}, account {account.slug!r} with {records:,} records\n")
    return account


def _url(spec: PageSpec, account: Any, skipped: list[str]) -> str | None:
    """The page's URL for `account`; None (and noted in `skipped`) when it does not resolve or has no data."""
    from django.urls import NoReverseMatch, reverse

    try:
        url = reverse(spec.url_name, args=spec.args())
    except NoReverseMatch:
        skipped.append(spec.url_name)
        return None
    except IndexError:
        skipped.append(f"{spec.url_name} (no data)")
        return None
    query = {"account": account.slug, **spec.query()}
    return f"{url}?{urlencode(query)}"


def _time_page(spec: PageSpec, url: str, client: Any, repeat: int) -> Timing:
    """Warm up, count one request's queries, then time `repeat` requests; the printed line's figures."""
    from django.db import connection

    headers = {"HX-Request": "true"} if spec.htmx else {}

    def get() -> Any:
        response = client.get(url, headers=headers)
        if getattr(response, "streaming", False):
            b"".join(response.streaming_content)
        return response

    for _ in range(WARM_UP):
        get()
    queries = 0

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = get()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        get()
        times.append((time.perf_counter() - started) * 1000)
    p50, p95, worst = percentile(times, 0.5), percentile(times, 0.95), max(times)
    verdict = "ok" if p95 <= spec.target_ms else "MISSED"
    print(
        f"{spec.label[:46]:46} {response.status_code:>6} {queries:>7} {p50:8.1f} {p95:8.1f} {worst:8.1f}  "
        f"≤ {spec.target_ms:.0f} {verdict}",
        flush=True,
    )
    return (spec.label, url, response.status_code, queries, p50, p95, worst, spec.target_ms)


if __name__ == "__main__":
    main()
