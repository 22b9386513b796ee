"""`newapi_console`: the console API of New API / One API style resellers (README "Billing and provider sync").

Console access token in `Authorization`, numeric user id in `New-Api-User`;
answers wrapped as `{"success", "message", "data"}`, failures often HTTP 200 with
`success: false`. The balance is `data.quota` of `/api/user/self` in quota units,
`quota_per_unit` (from `/api/status`, default 500,000) of them to one US dollar.
Per-request logs come from `/api/log/self`, newest first, paged inside a fixed
`[start_timestamp, end_timestamp]` window so that rows arriving meanwhile do not
shift the pages; the sync service turns them into records with the importer's
mapping (`usage.importers.newapi_record`).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from billing.providers.base import Adapter, BalanceReading, Connection
from billing.providers.errors import BadAnswer
from billing.providers.http import get_json
from billing.providers.newapi_pricing import newapi_listing
from usage.catalogue.listing import Listing

DEFAULT_QUOTA_PER_UNIT = Decimal(500_000)
PAGE_SIZE = 100
MAX_PAGES = 10_000
CONSUME, ERROR = 2, 5
LOG_TYPES = (CONSUME, ERROR)  # the rows that are usage; top-ups, management and refunds are not
KEY_STATUSES = {1: "enabled", 2: "disabled", 3: "expired", 4: "exhausted"}
MONEY_QUANTUM = Decimal("1e-10")


def console_root(base_url: str) -> str:
    """The console lives at the site root; accounts store the API base (…/v1)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _integer(data: dict[str, Any], name: str, where: str, *, required: bool = False) -> int | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadAnswer(f"{where}: {name!r} is not an integer")
    return value


def _positive_number(data: dict[str, Any], name: str, default: Decimal | None) -> Decimal | None:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | Decimal) or value <= 0:
        raise BadAnswer(f"/api/status: {name!r} is not a positive number")
    return Decimal(value)


class NewApiConsole(Adapter):
    name = "newapi_console"
    reads_logs = True

    def _data(
        self,
        connection: Connection,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        exact: bool = True,
    ) -> Any:
        """`data` of a successful answer. `exact` reads decimals as Decimal (balances); log rows
        are read as a file import reads them, so that the importer's mapping applies unchanged."""
        return self._answer(connection, path, params=params, auth=auth, exact=exact).get("data")

    def _answer(
        self,
        connection: Connection,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        exact: bool = True,
    ) -> dict[str, Any]:
        """A successful `{success, message, data, …}` answer, whole."""
        headers: dict[str, str] = {}
        if auth:
            headers = {
                "Authorization": f"Bearer {connection.credential('access_token')}",
                "New-Api-User": connection.credential("user_id"),
            }
        url = console_root(connection.base_url) + path
        body = get_json(connection.client, url, headers=headers, params=params, exact_numbers=exact)
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise BadAnswer(f"{path} did not answer with {{success, message, data}}")
        if not body["success"]:
            message = body.get("message")
            raise BadAnswer(f"{path} failed: {str(message)[:300] if message else 'success is false, no message'}")
        return body

    def _status(self, connection: Connection) -> dict[str, Any]:
        status = self._data(connection, "/api/status", auth=False)
        if not isinstance(status, dict):
            raise BadAnswer("/api/status: data is not an object")
        return status

    def _money(self, connection: Connection, status: dict[str, Any]) -> tuple[str, Decimal]:
        """The currency amounts are shown in, and its units per US dollar."""
        rate = _positive_number(status, "usd_exchange_rate", None)
        if connection.currency != "USD" and rate is not None and connection.currency == "CNY":
            return "CNY", rate  # the console's own conversion for CNY display
        return "USD", Decimal(1)

    def model_listing(self, connection: Connection) -> Listing:
        """`/api/pricing` (and `{base}/models` with a relay key): billing.providers.newapi_pricing."""
        status = self._status(connection)
        currency, factor = self._money(connection, status)
        per_unit = _positive_number(status, "quota_per_unit", DEFAULT_QUOTA_PER_UNIT) or DEFAULT_QUOTA_PER_UNIT

        def fetch(path: str, auth: bool) -> dict[str, Any]:
            return self._answer(connection, path, auth=auth)

        return newapi_listing(connection, fetch, per_unit=per_unit, currency=currency, factor=factor)

    def balance(self, connection: Connection) -> BalanceReading:
        status = self._status(connection)
        user = self._data(connection, "/api/user/self")
        if not isinstance(user, dict):
            raise BadAnswer("/api/user/self: data is not an object")
        per_unit = _positive_number(status, "quota_per_unit", DEFAULT_QUOTA_PER_UNIT)
        quota = _integer(user, "quota", "/api/user/self", required=True)
        used_quota = _integer(user, "used_quota", "/api/user/self")
        currency, factor = self._money(connection, status)

        def money(units: int | None) -> Decimal | None:
            if units is None:
                return None
            return (Decimal(units) / per_unit * factor).quantize(MONEY_QUANTUM)  # type: ignore[operator]  # per_unit comes from _positive_number: a positive number

        return BalanceReading(
            balance=money(quota),
            currency=currency,
            used=money(used_quota),
            request_count=_integer(user, "request_count", "/api/user/self"),
            raw={
                "status": {k: status.get(k) for k in ("quota_per_unit", "quota_display_type", "usd_exchange_rate")},
                "user": {k: user.get(k) for k in ("id", "quota", "used_quota", "request_count", "group")},
            },
        )

    def log_pages(self, connection: Connection, *, start: int, end: int) -> Iterator[list[dict[str, Any]]]:
        for log_type in LOG_TYPES:
            yield from self._pages(
                connection,
                "/api/log/self",
                {"type": log_type, "start_timestamp": start, "end_timestamp": end},
            )

    def key_statuses(self, connection: Connection) -> dict[str, str]:
        statuses: dict[str, str] = {}
        for page in self._pages(connection, "/api/token/", {}):
            for key in page:
                if isinstance(key, dict) and isinstance(key.get("name"), str) and key["name"]:
                    statuses[key["name"]] = KEY_STATUSES.get(key.get("status"), "unknown")  # type: ignore[arg-type]  # a missing status (None) is no key: it reads as unknown
        return statuses

    def _pages(self, connection: Connection, path: str, query: dict[str, Any]) -> Iterator[list[Any]]:
        """Pages until the listing is exhausted: `total` reached, or a short or empty page."""
        previous: list[Any] | None = None
        for page in range(1, MAX_PAGES + 1):
            data = self._data(connection, path, params={**query, "p": page, "page_size": PAGE_SIZE}, exact=False)
            items, total, size = _page_of(data, path)
            if not items:
                return
            if items == previous:
                raise BadAnswer(f"{path} answered page {page} with the rows of page {page - 1}: paging is ignored")
            yield items
            if total is not None:
                if page * size >= total:
                    return
            elif len(items) < size:
                return
            previous = items
        raise BadAnswer(f"{path} has more than {MAX_PAGES:,} pages")


def _page_of(data: Any, where: str) -> tuple[list[Any], int | None, int]:
    """(items, total, page size) of a page: `{page, page_size, total, items}` or a bare list."""
    if isinstance(data, list):
        return data, None, PAGE_SIZE
    if not isinstance(data, dict):
        raise BadAnswer(f"{where}: data is neither a page nor a list")
    items = data.get("items")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise BadAnswer(f"{where}: data.items is not a list")
    total = _integer(data, "total", where)
    size = _integer(data, "page_size", where) or PAGE_SIZE
    return items, total, size
