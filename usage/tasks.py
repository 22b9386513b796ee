"""Celery tasks of the usage app: load ids, call a service."""

from __future__ import annotations

from celery import shared_task

from usage import rollups
from usage.models import Account


@shared_task
def rebuild_hourly_usage(account_id: int) -> int:
    """Recount an account's hourly rollup from its raw records; returns the number of groups."""
    return rollups.rebuild(Account.objects.get(pk=account_id))
