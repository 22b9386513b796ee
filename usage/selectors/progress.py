"""Whether the figures are still moving: the repricing jobs running after a price change."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Sum
from django.utils import timezone

from usage.models import Account, RepricingRun


@dataclass(frozen=True)
class RepricingProgress:
    done: int
    total: int

    @property
    def remaining(self) -> int:
        return max(self.total - self.done, 0)


def repricing_progress(account: Account) -> RepricingProgress | None:
    """Records re-costed so far out of those the running repricing jobs look at, or None when idle.

    One aggregate over the (account, finished_at) index; runs not updated for
    RepricingRun.STALE_AFTER are taken as dead workers and ignored.
    """
    found = RepricingRun.objects.filter(
        account=account, finished_at__isnull=True, updated_at__gte=timezone.now() - RepricingRun.STALE_AFTER
    ).aggregate(done=Sum("done"), total=Sum("total"))
    if found["total"] is None:
        return None
    return RepricingProgress(done=min(found["done"] or 0, found["total"]), total=found["total"])
