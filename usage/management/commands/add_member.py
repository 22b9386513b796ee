from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from toki_dashboard.roles import Role
from usage.models import Account
from usage.services import add_member


class Command(BaseCommand):
    help = (
        "Make a dashboard user a member of an account, so that they see it. With --role, also give "
        "them that role (roles hold in every account they are a member of; admin sees every account)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--account", required=True, help="account slug")
        parser.add_argument("--user", required=True, help="username")
        parser.add_argument("--role", choices=[role.value for role in Role], help="finance, engineer or admin")

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(slug=options["account"]).first()
        if account is None:
            raise CommandError(f"No account with slug {options['account']!r}.")
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user {options['user']!r}; create it first (manage.py createsuperuser, the admin).")
        role = Role(options["role"]) if options["role"] else None
        _, created = add_member(account=account, user=user, role=role)
        state = "is now a member" if created else "was already a member"
        with_role = f" (role {role.value})" if role else ""
        self.stdout.write(f"{user.get_username()} {state} of {account.slug}{with_role}.")
        if role is Role.ADMIN:
            self.stdout.write("The admin role sees and manages every account.")
