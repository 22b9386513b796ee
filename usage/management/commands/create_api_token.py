from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from usage.models import Account, TokenScope
from usage.services import create_api_token


class Command(BaseCommand):
    help = "Create an API token for one account; the token is printed once and stored only as a hash."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--name", required=True, help="what the token is for, e.g. 'log shipper'")
        parser.add_argument("--scopes", required=True, help=f"comma-separated, of: {','.join(TokenScope.values)}")

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(slug=options["account"]).first()
        if account is None:
            raise CommandError(f"No account with slug {options['account']!r}.")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        try:
            token, plaintext = create_api_token(account=account, name=options["name"], scopes=scopes)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Token {token.name!r} for {account.slug} with scopes {', '.join(token.scopes)}:")
        self.stdout.write(plaintext)
        self.stderr.write("Store it now: it cannot be shown again.")
