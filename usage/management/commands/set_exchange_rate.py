from __future__ import annotations

from argparse import ArgumentParser
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from usage.models import ExchangeRate, RateSource
from usage.pricing.services import set_exchange_rate


class Command(BaseCommand):
    help = (
        "Enter an exchange rate: 1 FROM = RATE TO from a moment on, until the pair's next rate. Records "
        "of accounts kept in TO whose price is in FROM are re-valued at it in the background."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--from", dest="from_currency", required=True, help="the price's currency, e.g. USD")
        parser.add_argument("--to", dest="to_currency", required=True, help="the account's currency, e.g. CNY")
        parser.add_argument("--rate", required=True, help="units of TO per unit of FROM, e.g. 7.1234")
        parser.add_argument(
            "--effective-from", required=True, help="RFC 3339 with an offset, e.g. 2026-12-01T00:00:00Z"
        )
        parser.add_argument("--note", default="", help="where the rate comes from (kept with it)")
        parser.add_argument("--by", default="", help="the dashboard user entering it (default: none)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            rate = Decimal(options["rate"])
        except InvalidOperation as exc:
            raise CommandError(f"--rate: {options['rate']!r} is not a decimal number such as 7.1234.") from exc
        try:
            effective_from = datetime.fromisoformat(options["effective_from"])
        except ValueError as exc:
            raise CommandError(f"--effective-from: {exc}; use RFC 3339, e.g. 2026-12-01T00:00:00Z.") from exc
        if effective_from.tzinfo is None:
            raise CommandError("--effective-from: give the offset too, e.g. 2026-12-01T00:00:00Z.")
        user = None
        if options["by"]:
            user = get_user_model().objects.filter(username=options["by"]).first()
            if user is None:
                raise CommandError(f"--by: no user {options['by']!r}.")
        try:
            entry = set_exchange_rate(
                from_currency=options["from_currency"],
                to_currency=options["to_currency"],
                rate=rate,
                effective_from=effective_from,
                source=RateSource.COMMAND,
                entered_by=user,
                note=options["note"],
            )
        except ValidationError as exc:
            names = {"from_currency": "--from", "to_currency": "--to", "effective_from": "--effective-from"}
            problems = [
                f"{names.get(field, '--' + field)}: {' '.join(messages)}"
                for field, messages in exc.message_dict.items()
            ]
            raise CommandError("; ".join(problems)) from exc
        replaced = ExchangeRate.objects.filter(
            from_currency=entry.from_currency, to_currency=entry.to_currency, effective_from=entry.effective_from
        ).exclude(pk=entry.pk)
        self.stdout.write(
            f"1 {entry.from_currency} = {entry.rate.normalize():f} {entry.to_currency} from "
            f"{entry.effective_from.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            + (" (replaces the earlier entry for that moment)" if replaced.exists() else "")
            + f". Records of {entry.to_currency} accounts priced in {entry.from_currency} from then on are "
            "re-valued in the background."
        )
