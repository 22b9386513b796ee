"""Keys & teams over HTTP: figures per key and team equal sums of the ingested records, and a
key's name and team can be edited without losing its records."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from usage.models import ApiKey, HourlyUsage, UsageRecord
from usage.schemas import RecordIn
from usage.services import record_usage
from usage.teams.services import create_team


class TableRows(HTMLParser):
    """The text of each cell of each body row of the table with a given id."""

    def __init__(self, table_id: str) -> None:
        super().__init__()
        self.table_id = table_id
        self.depth = 0  # >0 while inside the table
        self.in_body = False
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and (self.depth or dict(attrs).get("id") == self.table_id):
            self.depth += 1
        elif self.depth and tag == "tbody":
            self.in_body = True
        elif self.depth and self.in_body and tag == "tr":
            self.rows.append([])
        elif self.depth and self.in_body and tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self.depth:
            self.depth -= 1
        elif tag == "tbody":
            self.in_body = False
        elif tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(response: Any, table_id: str) -> dict[str, list[str]]:
    """Body rows of a table keyed by their first cell."""
    parser = TableRows(table_id)
    parser.feed(response.content.decode())
    assert parser.rows, f"no table #{table_id} with rows in the page"
    return {row[0]: row[1:] for row in parser.rows}


KEYS_COLUMNS = ["team", "status", "requests", "tokens", "errors", "spend", "last_seen", "actions"]
TEAMS_COLUMNS = ["keys", "requests", "tokens", "errors", "spend"]


def key_table(response: Any) -> dict[str, dict[str, str]]:
    return {name: dict(zip(KEYS_COLUMNS, cells, strict=True)) for name, cells in table(response, "keys-table").items()}


def team_table(response: Any) -> dict[str, dict[str, str]]:
    return {
        name: dict(zip(TEAMS_COLUMNS, cells, strict=True)) for name, cells in table(response, "teams-table").items()
    }


# (key, team in metadata or None, days ago, prompt, completion, status, reported cost)
TRAFFIC = [
    ("checkout-api", "payments", 1, 1_200, 300, 200, "0.0150"),
    ("checkout-api", "payments", 2, 800, 200, 200, "0.0100"),
    ("checkout-api", "payments", 3, 0, 0, 429, None),
    ("search-api", "search", 1, 5_000, 1_000, 200, "0.0420"),
    ("search-api", "search", 5, 2_500, 500, 200, "0.0210"),
    ("batch-jobs", None, 4, 10_000, 4_000, 200, "0.1125"),
    ("batch-jobs", "search", 6, 1_000, 100, 200, "0.0040"),
    ("checkout-api", "payments", 45, 99_000, 9_000, 200, "9.0000"),  # outside the default 30 days
]


@pytest.fixture
def traffic(account) -> list[tuple]:
    now = timezone.now()
    records = [
        RecordIn(
            request_id=f"r{n}",
            occurred_at=now - timedelta(days=days),
            model="gpt-4o",
            api_key=f"name:{key}",
            status_code=status,
            usage={"prompt_tokens": prompt, "completion_tokens": completion} if status == 200 else None,
            cost=cost,
            metadata={"team": team} if team else {},
        )
        for n, (key, team, days, prompt, completion, status, cost) in enumerate(TRAFFIC)
    ]
    record_usage(account, list(enumerate(records)), source="api")
    return [row for row in TRAFFIC if row[2] < 30]


def money(amount: Decimal) -> str:
    """Money as pages show it: two places, rounded half up like an invoice, thousands separated."""
    return f"{amount.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def expected_by(rows: list[tuple], index: int) -> dict[str, dict[str, Any]]:
    sums: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"requests": 0, "tokens": 0, "errors": 0, "cost": Decimal(0), "unpriced": 0}
    )
    for row in rows:
        group = sums[row[index] or ""]
        group["requests"] += 1
        group["tokens"] += row[3] + row[4]
        group["errors"] += row[5] != 200
        group["cost"] += Decimal(row[6] or 0)
        # A failed call without usage is priced at zero; only a served call without a price is unpriced.
        group["unpriced"] += row[6] is None and row[5] == 200
    return sums


def value_cell(group: dict[str, Any]) -> str:
    """The usage value as the page shows it: what is priced, saying how many requests are not."""
    unpriced = f" +{group['unpriced']} unpriced" if group["unpriced"] else ""
    return money(group["cost"]) + unpriced


def test_per_key_figures_equal_the_sums_of_the_ingested_records(traffic, engineer_client: Client) -> None:
    response = engineer_client.get("/keys/")

    assert response.status_code == 200
    shown = key_table(response)
    for key, expected in expected_by(traffic, 0).items():
        row = shown[key]
        assert row["requests"] == f"{expected['requests']:,}"
        assert row["tokens"] == f"{expected['tokens']:,}"
        assert row["spend"] == value_cell(expected)
        assert row["errors"] == f"{expected['errors'] / expected['requests'] * 100:.1f}%"
    by_key = {r.name: r for r in response.context["key_rows"]}
    assert by_key["checkout-api"].totals.cost == expected_by(traffic, 0)["checkout-api"]["cost"]


def test_per_team_figures_follow_the_team_each_request_was_recorded_with(traffic, engineer_client: Client) -> None:
    response = engineer_client.get("/keys/")

    shown = team_table(response)
    expected = expected_by(traffic, 1)
    assert set(shown) == {team or "No team" for team in expected}
    for team, sums in expected.items():
        row = shown[team or "No team"]
        assert row["requests"] == f"{sums['requests']:,}"
        assert row["tokens"] == f"{sums['tokens']:,}"
        assert row["spend"] == value_cell(sums)
    # batch-jobs sent requests for two teams (search, and none), search-api for one.
    assert shown["search"]["keys"] == "2"


def test_the_team_filter_keeps_only_that_teams_usage_and_stays_in_the_url(traffic, engineer_client: Client) -> None:
    response = engineer_client.get("/keys/?period=7d&team=search")

    shown = key_table(response)
    search_rows = [row for row in traffic if row[1] == "search" and row[2] < 7]
    expected = expected_by(search_rows, 0)
    assert set(shown) == set(expected)
    for key, sums in expected.items():
        assert shown[key]["tokens"] == f"{sums['tokens']:,}"
    page = response.content.decode()
    assert 'name="team"' in page and '<option value="search" selected>' in page
    assert "period=7d&amp;team=search" in page  # the edit links come back to the same view


def test_the_spend_by_team_chart_has_one_bar_per_team_in_the_accounts_currency(traffic, engineer_client) -> None:
    chart = engineer_client.get("/keys/").context["team_chart"]

    (bars,) = chart["data"]
    expected = expected_by(traffic, 1)
    assert dict(zip(bars["y"], bars["x"], strict=True)) == {
        (team or "No team"): float(sums["cost"]) for team, sums in expected.items()
    }
    assert "USD" in chart["layout"]["xaxis"]["title"]["text"]


def test_a_key_without_a_provider_status_shows_a_dash_and_one_with_it_shows_it(traffic, engineer_client) -> None:
    ApiKey.objects.filter(name="search-api").update(provider_status="disabled")

    shown = key_table(engineer_client.get("/keys/"))

    assert shown["search-api"]["status"] == "Disabled"
    assert shown["checkout-api"]["status"] == "—"


def test_renaming_a_key_and_moving_it_to_a_team_keeps_its_records(traffic, engineer_client: Client) -> None:
    key = ApiKey.objects.get(name="batch-jobs")
    create_team(key.account, "data")  # teams are created on the Teams page; a key is moved into one
    fingerprint, records_before = key.fingerprint, UsageRecord.objects.filter(api_key=key).count()
    before = key_table(engineer_client.get("/keys/"))["batch-jobs"]

    response = engineer_client.post(
        f"/keys/{key.pk}/edit/", {"name": "Nightly batch", "team": "data", "next": "?period=30d"}
    )

    assert response.status_code == 302 and response["Location"] == "/keys/?period=30d"
    key.refresh_from_db()
    assert (key.name, key.team, key.fingerprint) == ("Nightly batch", "data", fingerprint)
    assert UsageRecord.objects.filter(api_key=key).count() == records_before
    after = key_table(engineer_client.get("/keys/"))
    assert "batch-jobs" not in after
    renamed = after["Nightly batch"]
    assert renamed["team"] == "data"
    assert (renamed["requests"], renamed["tokens"], renamed["spend"]) == (
        before["requests"],
        before["tokens"],
        before["spend"],
    )
    # Requests without a team of their own are counted for the key's new team from now on.
    record_usage(
        key.account,
        [(0, RecordIn(request_id="later", occurred_at=timezone.now(), model="gpt-4o", api_key="batch-jobs"))],
        source="api",
    )
    assert HourlyUsage.objects.filter(api_key=key, team="data").exists()
    assert "data" in team_table(engineer_client.get("/keys/"))


def test_a_key_edit_with_bad_input_names_the_field_and_changes_nothing(traffic, engineer_client: Client) -> None:
    key = ApiKey.objects.get(name="search-api")

    response = engineer_client.post(f"/keys/{key.pk}/edit/", {"name": "", "team": "x" * 101})

    assert response.status_code == 400
    page = response.content.decode()
    assert "Display name: This field is required." in page
    # A team is one of the account's teams: a name that is not one (a typo) is refused.
    assert "Team: Select a valid choice." in page
    key.refresh_from_db()
    assert (key.name, key.team) == ("search-api", "")


def test_only_the_keys_of_the_current_account_can_be_edited(traffic, engineer_client: Client) -> None:
    from usage.services import create_account

    other = create_account(name="Other", slug="other")
    foreign = ApiKey.objects.create(account=other, fingerprint="name:theirs", name="theirs")

    assert engineer_client.get(f"/keys/{foreign.pk}/edit/").status_code == 404
    assert engineer_client.post(f"/keys/{foreign.pk}/edit/", {"name": "mine"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.name == "theirs"


def test_an_off_site_next_is_ignored_after_saving(traffic, engineer_client: Client) -> None:
    key = ApiKey.objects.get(name="search-api")

    response = engineer_client.post(f"/keys/{key.pk}/edit/", {"name": "s", "next": "https://evil.example/"})

    assert response["Location"] == "/keys/"


@pytest.mark.parametrize("query", ["?period=nope", "?team=" + "t" * 500, "?period=custom&start=2025-13-01&end=x"])
def test_odd_queries_never_break_the_page(traffic, engineer_client: Client, query: str) -> None:
    assert engineer_client.get("/keys/" + query).status_code == 200


def test_finance_cannot_open_keys_and_an_htmx_request_gets_only_the_region(
    traffic, finance_client: Client, engineer_client: Client
) -> None:
    assert finance_client.get("/keys/").status_code == 403
    fragment = engineer_client.get("/keys/?period=7d", headers={"HX-Request": "true"})
    assert b"<html" not in fragment.content and b'id="keys-table"' in fragment.content
