"""Who may open what: every URL of the URL conf × every role × the user's own account and another.

The URLs come from walking the URL conf (as test_authentication_required does), and every
one must have a rule below: a page added without deciding who may see it fails here.

A user with one of the rule's roles gets `ok` in an account they are a member of and a 403
in an account they are not (`?account=<slug>` names the account either way); users without the role get `refused`
whatever the account. Admins see every account. Objects in URLs (a request, a key, an
alert rule) are taken from the account being asked for, so a 403 is the tenancy's doing,
not a missing object. None of these users is staff: the Django admin sends them all to
its own login page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.urls import get_resolver, reverse

from billing.models import AlertChannel, AlertKind, AlertRule, Budget
from tests.test_authentication_required import Endpoint, walk
from toki_dashboard.roles import Role
from usage.models import Account, ApiKey, ImportJob, Membership, TokenScope, UsageRecord
from usage.schemas import validate_records
from usage.services import create_account, create_api_token, record_usage

FINANCE, ENGINEER, ADMIN, ROLELESS = "finance", "engineer", "admin", "roleless"
EVERYONE = frozenset({FINANCE, ENGINEER, ADMIN, ROLELESS})
NOBODY: frozenset[str] = frozenset()
READERS = frozenset({FINANCE, ENGINEER, ADMIN})
ENGINEERS = frozenset({ENGINEER, ADMIN})
FINANCE_ONLY = frozenset({FINANCE, ADMIN})
ADMINS = frozenset({ADMIN})
DAY = "2026-11-20"


@dataclass(frozen=True)
class Rule:
    allowed: frozenset[str]
    ok: int = 200
    refused: int = 403
    method: str = "get"
    query: dict[str, str] = field(default_factory=dict)
    scoped: bool = True  # the answer depends on the account asked for


RULES: dict[str, Rule] = {
    "login": Rule(EVERYONE, ok=302, scoped=False),  # a logged-in user is sent on
    "admin:login": Rule(EVERYONE, scoped=False),  # the admin's login form, to sign in as staff
    "logout": Rule(EVERYONE, ok=405, scoped=False),  # logging out is a POST
    # The API, with a session
    "api:openapi-json": Rule(EVERYONE, scoped=False),
    "api:openapi-view": Rule(EVERYONE, scoped=False),
    "api:api-root": Rule(EVERYONE, ok=404, scoped=False),
    "api:ingest_usage": Rule(NOBODY, method="post", refused=401, scoped=False),  # tokens only
    "api:record_purchase": Rule(NOBODY, method="post", refused=401, scoped=False),
    "api:record_wallet_entry": Rule(NOBODY, method="post", refused=401, scoped=False),
    "api:usage_summary": Rule(READERS, query={"start": DAY, "end": DAY, "group_by": "model"}),
    "api:usage_records": Rule(ENGINEERS, query={"start": DAY, "end": DAY}),
    "api:balance": Rule(READERS),
    "api:list_budgets": Rule(FINANCE_ONLY),
    "api:create_budget": Rule(NOBODY, method="post", refused=401, scoped=False),  # tokens only
    "metrics": Rule(NOBODY, refused=401, scoped=False),  # a token with the metrics scope only
    # Pages
    "usage:choose_language": Rule(EVERYONE, method="post", ok=400, scoped=False),  # no language: refused
    "usage:overview": Rule(READERS),
    "usage:overview_spend_chart": Rule(READERS),
    "usage:models": Rule(ENGINEERS),
    "usage:model_detail": Rule(ENGINEERS),
    "usage:model_card": Rule(ENGINEERS),
    "usage:requests": Rule(ENGINEERS),
    "usage:requests_csv": Rule(ENGINEERS),
    "usage:request_detail": Rule(ENGINEERS),
    "usage:errors": Rule(ENGINEERS),
    "usage:spend": Rule(READERS),
    "usage:keys": Rule(ENGINEERS),
    "usage:key_edit": Rule(ENGINEERS),
    "usage:teams": Rule(READERS),  # reading; its forms are for admins (tests/usage/test_pages_teams.py)
    "usage:settings": Rule(ADMINS),
    "usage:token_create": Rule(ADMINS, method="post", ok=400),  # an empty form
    "usage:token_revoke": Rule(ADMINS),  # the confirmation page
    "usage:prices": Rule(ADMINS),
    "usage:accounts": Rule(ADMINS),
    "billing:plans": Rule(FINANCE_ONLY),
    "billing:record_purchase": Rule(FINANCE_ONLY, method="post", ok=400),
    "billing:void_purchase": Rule(FINANCE_ONLY, method="post", ok=400),
    "billing:record_top_up": Rule(FINANCE_ONLY, method="post", ok=400),
    "billing:record_adjustment": Rule(FINANCE_ONLY, method="post", ok=400),
    "billing:sync_now": Rule(FINANCE_ONLY, method="post", ok=302),
    "billing:balance_card": Rule(READERS),
    "billing:forecast_chart": Rule(FINANCE_ONLY),
    "billing:alerts": Rule(ADMINS),
    "billing:edit_alert_rule": Rule(ADMINS),
    "billing:test_alert_rule": Rule(ADMINS, method="post", ok=302),
    "billing:add_alert_channel": Rule(ADMINS, method="post", ok=400),  # an empty form, back with its errors
    "billing:test_alert_channel": Rule(ADMINS, method="post", ok=302),
    "billing:remove_alert_channel": Rule(ADMINS, method="post", ok=302),
    "billing:budgets": Rule(FINANCE_ONLY),
    "billing:edit_budget": Rule(FINANCE_ONLY),
    "billing:delete_budget": Rule(FINANCE_ONLY, method="post", ok=302),
    "billing:reports": Rule(FINANCE_ONLY),
    "usage:exchange_rates": Rule(FINANCE_ONLY),
    "usage:catalogue": Rule(ENGINEERS),
    "billing:sync_models_now": Rule(ENGINEERS, ok=302, method="post"),
    "billing:report_csv": Rule(FINANCE_ONLY),
    "usage:imports": Rule(FINANCE_ONLY),
    "usage:import_detail": Rule(FINANCE_ONLY),
    "usage:import_rejections_csv": Rule(FINANCE_ONLY),
}
# Whole namespaces with one rule.
NAMESPACE_RULES = {
    "admin:": Rule(NOBODY, refused=302, scoped=False),  # to the admin's login page: nobody here is staff
    "proxy:": Rule(EVERYONE, ok=404, scoped=False),  # the proxy is served by the ASGI app, not these views
}


def rule_for(endpoint: Endpoint) -> Rule | None:
    if endpoint.view_name in RULES:
        return RULES[endpoint.view_name]
    for prefix, rule in NAMESPACE_RULES.items():
        if endpoint.view_name.startswith(prefix):
            return rule
    return RULES.get(endpoint.view_name)


@dataclass
class Tenant:
    account: Account
    record: UsageRecord
    key: ApiKey
    rule: AlertRule
    channel: AlertChannel
    spare_channel: AlertChannel  # the one the removal removes
    budget: Budget
    spare_budget: Budget  # the one the deletion deletes
    import_job: ImportJob


def tenant(account: Account) -> Tenant:
    valid, _ = validate_records(
        [
            {
                "request_id": f"{account.slug}-1",
                "occurred_at": f"{DAY}T10:00:00Z",
                "model": "gpt-4o",
                "api_key": f"name:{account.slug}-key",
                "usage": {"prompt_tokens": 10, "completion_tokens": 5},
            }
        ]
    )
    record_usage(account, valid, source="api")
    rule = AlertRule.objects.create(
        account=account, name="Wallet low", kind=AlertKind.WALLET_BELOW, threshold=5, recipients=""
    )
    channels = [
        AlertChannel.objects.create(account=account, kind="email", address=f"{account.slug}@example.com", hint=name)
        for name in ("alerts", "spare")
    ]
    budgets = [Budget.objects.create(account=account, name=name, amount=10) for name in ("Monthly", "Spare")]
    import_job = ImportJob.objects.create(account=account, file_name="usage.csv", size_bytes=10, format="csv")
    return Tenant(
        account,
        UsageRecord.objects.get(account=account),
        ApiKey.objects.get(account=account),
        rule,
        *channels,
        *budgets,
        import_job,
    )


def url_of(endpoint: Endpoint, tenant: Tenant, token_id: int) -> str:
    """The endpoint's URL with objects of `tenant` for its parameters."""
    arguments: dict[str, list[Any]] = {
        "usage:model_detail": ["gpt-4o"],
        "usage:model_card": ["gpt-4o", "usage"],
        "usage:request_detail": [tenant.record.pk],
        "usage:key_edit": [tenant.key.pk],
        "usage:token_revoke": [token_id],
        "billing:edit_alert_rule": [tenant.rule.pk],
        "billing:test_alert_rule": [tenant.rule.pk],
        "billing:test_alert_channel": [tenant.channel.pk],
        "billing:remove_alert_channel": [tenant.spare_channel.pk],
        "billing:edit_budget": [tenant.budget.pk],
        "billing:delete_budget": [tenant.spare_budget.pk],
        "billing:report_csv": ["2026-11"],
        "usage:import_detail": [tenant.import_job.pk],
        "usage:import_rejections_csv": [tenant.import_job.pk],
    }
    if endpoint.view_name in arguments:
        return reverse(endpoint.view_name, args=arguments[endpoint.view_name])
    return endpoint.url


@pytest.fixture
def world(make_user) -> dict[str, Any]:
    ours = tenant(create_account(name="Ours", slug="ours"))
    theirs = tenant(create_account(name="Theirs", slug="theirs"))
    token, _ = create_api_token(account=ours.account, name="matrix", scopes=[TokenScope.READ])
    clients = {}
    for name, roles in ((FINANCE, [Role.FINANCE]), (ENGINEER, [Role.ENGINEER]), (ADMIN, [Role.ADMIN]), (ROLELESS, [])):
        user = make_user(f"{name}-user", *roles)
        Membership.objects.create(account=ours.account, user=user)
        client = Client(raise_request_exception=False)
        client.force_login(user)
        clients[name] = client
    return {"ours": ours, "theirs": theirs, "clients": clients, "token_id": token.pk}


def expected(rule: Rule, who: str, own_account: bool) -> int:
    if who not in rule.allowed:
        return rule.refused
    if rule.scoped and not own_account and who != ADMIN:
        return 403
    return rule.ok


def test_every_url_has_a_rule() -> None:
    missing = [f"{e.view_name} ({e.route})" for e in walk(get_resolver()) if rule_for(e) is None]

    assert missing == [], "decide who may open these and add them to RULES"


def test_every_role_gets_what_its_rule_says_in_its_own_account_and_in_another(world) -> None:
    wrong: list[str] = []
    checked = 0
    for endpoint in walk(get_resolver()):
        rule = rule_for(endpoint)
        assert rule is not None, endpoint.view_name
        for own_account in (True, False) if rule.scoped else (True,):
            target: Tenant = world["ours"] if own_account else world["theirs"]
            url = url_of(endpoint, target, world["token_id"])
            query = rule.query | {"account": target.account.slug}
            for who, client in world["clients"].items():
                if rule.method == "post":
                    path = f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}" if query else url
                    response = client.post(path, {})
                else:
                    response = client.get(url, query)
                checked += 1
                want = expected(rule, who, own_account)
                if response.status_code != want:
                    where = urlsplit(response.get("Location", "")).path
                    wrong.append(
                        f"{who:9} {'own' if own_account else 'other'} {rule.method.upper()} {url} "
                        f"({endpoint.view_name}): {response.status_code} {where}, expected {want}"
                    )

    print(f"access matrix: {checked} requests checked")
    assert wrong == [], "\n".join(wrong)
    assert checked > 600
