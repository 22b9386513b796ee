"""People in tests: alert recipients must be users who may see the account."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User

from usage.models import Account, Membership


def members_with_emails(account: Account, addresses: Iterable[str]) -> str:
    """Make each address a member's (creating the user), and return them as a rule's recipients."""
    addresses = list(addresses)
    for address in addresses:
        user, _ = User.objects.get_or_create(username=address, defaults={"email": address})
        Membership.objects.get_or_create(account=account, user=user)
    return ", ".join(addresses)
