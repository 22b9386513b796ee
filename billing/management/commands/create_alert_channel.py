"""manage.py create_alert_channel --account SLUG --kind email|webhook|apprise --target ADDRESS_OR_URL
[--secret SECRET] [--language en|zh-hans]: a channel every alert rule and budget of the account notifies."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.models import ChannelKind
from billing.notify.channels import create_channel
from usage.models import Account


class Command(BaseCommand):
    help = "Add a channel every alert rule and budget of the account notifies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="the account's slug")
        parser.add_argument("--kind", required=True, choices=[k.value for k in ChannelKind])
        parser.add_argument("--target", required=True, help="an email of a member, a webhook URL or an apprise URL")
        parser.add_argument("--secret", default="", help="webhooks: the signing secret (default: one is made)")
        parser.add_argument("--name", default="", help="a label for the channel")
        parser.add_argument(
            "--language",
            default="",
            choices=[code for code, _name in settings.LANGUAGES],
            help="the language of its emails and chat messages (default: LANGUAGE_CODE)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(slug=options["account"]).first()
        if account is None:
            raise CommandError(f"No account with the slug {options['account']!r}.")
        try:
            added = create_channel(
                account,
                kind=options["kind"],
                target=options["target"],
                secret=options["secret"],
                name=options["name"],
                language=options["language"],
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        channel = added.channel
        self.stdout.write(
            f"Channel {channel.pk} ({channel.get_kind_display()}, {channel.hint}) added to {account.slug}."
        )
        if channel.kind == ChannelKind.WEBHOOK and not options["secret"]:
            # stderr, like create_api_token's token: the one time it is shown.
            self.stderr.write(f"Signing secret (shown once): {added.secret}")
