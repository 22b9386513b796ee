from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from usage.models import Provider
from usage.services import create_account


class Command(BaseCommand):
    help = "Create a TOKI account the dashboard tracks."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True)
        parser.add_argument("--currency", default="USD")
        parser.add_argument("--provider", choices=Provider.values, default=Provider.MANUAL)
        parser.add_argument("--base-url", default="", help="TOKI API base URL (default: TOKI_BASE_URL)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = create_account(
                name=options["name"],
                slug=options["slug"],
                currency=options["currency"],
                provider=options["provider"],
                base_url=options["base_url"],
            )
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.message_dict.items())
            raise CommandError(f"Account not created: {problems}") from exc
        self.stdout.write(f"Created account {account.slug!r} ({account.name}, {account.currency}, {account.provider}).")
