"""Allocations and wallet charges follow the failed calls usage 0011 stopped billing.

Every account with an allocation computed from tokens or a cost its record no longer
has gets a recompute request from the earliest such allocation on; the periodic
allocation refresh (or `refresh_allocations`) then rewrites allocations, plan usage and
the wallet's usage charges from there. Prints which accounts and from when.
"""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import F, Min, Q


def request_recomputes(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    allocation = apps.get_model("billing", "Allocation")
    recompute_request = apps.get_model("billing", "RecomputeRequest")
    wallet = Q(purchase__isnull=True)
    changed = ~Q(record_tokens=F("record__prompt_tokens") + F("record__completion_tokens")) | (
        wallet
        & (
            Q(record_cost__isnull=True, record__cost__isnull=False)
            | Q(record_cost__isnull=False, record__cost__isnull=True)
            | (Q(record_cost__isnull=False, record__cost__isnull=False) & ~Q(record_cost=F("record__cost")))
        )
    )
    stale = (
        allocation.objects.filter(changed)
        .exclude(record__error_cause="none")
        .values("account_id", "account__slug")
        .annotate(since=Min("occurred_at"))
        .order_by("account_id")
    )
    for row in stale:
        recompute_request.objects.create(
            account_id=row["account_id"], from_time=row["since"], reason="failed calls are no longer billed"
        )
        print(
            f"\n  {row['account__slug']}: allocations and wallet charges recomputed from "
            f"{row['since']:%Y-%m-%d %H:%M} UTC by the next allocation refresh",
            end="",
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0002_alerts"),
        ("usage", "0011_failed_calls_are_not_billed"),
    ]

    operations = [migrations.RunPython(request_recomputes, migrations.RunPython.noop, elidable=True)]
