"""A month of one account, every figure computed by hand.

Purchases (tokens are prompt + completion):
  A "Pro"       1000 tokens, gpt-* and claude-*, priority 0, 1 → 11 March
  B "GPT pack"   500 tokens, gpt-*,              priority 1, 1 → 31 March, paid from the wallet (8.00)
  C "Extra"      600 tokens, gpt-* and claude-*, priority 0, 5 → 20 March
  D "Trial"     1000 tokens, claude-*,           priority 0, 8 → 10 March (nothing uses it)
  E "Duplicate" 1000 tokens, priority 2: recorded by mistake, burns first, then voided.
Nothing covers doubao. The late record (3 March, 250 claude tokens) arrives after
everything else was allocated and moves the burn of A and C, and of the wallet, later on.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from billing import selectors, services
from billing.models import Allocation, AuditEvent, PlanExpiry, PlanPurchase, WalletEntry, WalletEntryKind
from tests.billing.conftest import FINANCE, allocate, at, buy, ingest, record, top_up
from usage.models import UsageRecord

NOW = at(25)

RECORDS = [
    record("r1", at(2, 10), "gpt-4o", 250, 50, "0.30"),
    record("r2", at(2, 11), "claude-sonnet-4", 300, 100, "0.80"),
    record("r3", at(3, 9), "doubao-pro", 80, 20, "0.05"),
    record("r4", at(4, 12), "gpt-4o-mini", 400, 100, "0.10"),
    record("r5", at(6, 8), "claude-sonnet-4", 350, 150, "1.00"),
    record("r6", at(9, 10), "doubao-pro", 150, 50, None),  # no price: charged, amount unknown
    record("r7", at(12, 10), "gpt-4o", 400, 100, "1.00"),
    record("r8", at(21, 10), "claude-sonnet-4", 200, 100, "0.60"),
    record("r9", at(22, 10), "gpt-4o", 80, 20, "0.40"),
]
LATE = record("r-late", at(3, 8), "claude-sonnet-4", 200, 50, "0.50")


@pytest.fixture
def month(account):
    ids = {
        "A": buy(account, "A", 1000, at(1), at(11), plan="Pro", models=["gpt-*", "claude-*"]),
        "B": buy(account, "B", 500, at(1), at(31), plan="GPT pack", models=["gpt-*"], priority=1,
                 price="8.00", paid_from_wallet=True),
        "C": buy(account, "C", 600, at(5), at(20), plan="Extra", models=["gpt-*", "claude-*"]),
        "D": buy(account, "D", 1000, at(8), at(10), plan="Trial", models=["claude-*"]),
        "E": buy(account, "E", 1000, at(1), at(31), plan="Duplicate", priority=2),
    }  # fmt: skip
    top_up(account, "t1", "50.00", at(1) - timedelta(days=1))
    top_up(account, "t2", "20.00", at(6))
    top_up(account, "fee", "-5.00", at(7), kind="adjustment")
    mistake = top_up(account, "t3", "100.00", at(8))
    services.reverse_wallet_entry(WalletEntry.objects.get(pk=mistake), FINANCE, "typed into the wrong account")
    ingest(account, *RECORDS)
    allocate(account, NOW)
    return ids


def allocation_table(account, ids: dict[str, int]) -> dict[str, list[tuple[str, int, Decimal | None]]]:
    names = {pk: name for name, pk in ids.items()}
    table: dict[str, list[tuple[str, int, Decimal | None]]] = {}
    rows = Allocation.objects.filter(account=account).select_related("record").order_by("record__request_id", "id")
    for row in rows:
        target = names[row.purchase_id] if row.purchase_id else "wallet"
        table.setdefault(row.record.request_id, []).append((target, row.tokens, row.amount))
    return {rid: sorted(lines, key=lambda line: line[0] == "wallet") for rid, lines in table.items()}


def used(account, now=NOW) -> dict[str, tuple[int, int | None]]:
    return {
        s.purchase.idempotency_key: (s.tokens_used, s.tokens_expired)
        for s in selectors.plan_statuses(account, now=now, include_expired=True)
    }


def test_the_duplicate_burns_first_until_it_is_voided(account, month):
    assert used(account)["E"] == (1000, None)

    services.void_purchase(PlanPurchase.objects.get(pk=month["E"]), FINANCE, "entered twice")
    allocate(account, NOW)

    assert "E" not in used(account)
    assert not Allocation.objects.filter(purchase_id=month["E"]).exists()


@pytest.fixture
def voided(account, month):
    services.void_purchase(PlanPurchase.objects.get(pk=month["E"]), FINANCE, "entered twice")
    allocate(account, NOW)
    return month


def test_before_the_late_record_every_allocation_and_balance_is_as_computed_by_hand(account, voided):
    assert allocation_table(account, voided) == {
        "r1": [("B", 300, None)],
        "r2": [("A", 400, None)],
        "r3": [("wallet", 100, Decimal("0.05"))],
        "r4": [("B", 200, None), ("A", 300, None)],
        "r5": [("A", 300, None), ("C", 200, None)],
        "r6": [("wallet", 200, None)],
        "r7": [("C", 400, None), ("wallet", 100, Decimal("0.2"))],
        "r8": [("wallet", 300, Decimal("0.6"))],
        "r9": [("wallet", 100, Decimal("0.4"))],
    }
    assert used(account) == {"A": (1000, 0), "B": (500, None), "C": (600, 0), "D": (0, 1000)}
    # 50 − 8 (B from the wallet) + 20 − 5 + 100 − 100 (reversed) − (0.05 + 0.20 + 0.60 + 0.40)
    assert selectors.wallet_balance(account) == Decimal("55.75")


def test_a_late_record_moves_later_burn_to_the_next_plan_and_to_the_wallet(account, voided):
    ingest(account, LATE)
    allocate(account, NOW)

    assert allocation_table(account, voided) == {
        "r-late": [("A", 250, None)],
        "r1": [("B", 300, None)],
        "r2": [("A", 400, None)],
        "r3": [("wallet", 100, Decimal("0.05"))],
        "r4": [("B", 200, None), ("A", 300, None)],
        "r5": [("A", 50, None), ("C", 450, None)],  # A has 250 fewer tokens left
        "r6": [("wallet", 200, None)],
        "r7": [("C", 150, None), ("wallet", 350, Decimal("0.7"))],  # so C has 250 fewer, and the wallet pays
        "r8": [("wallet", 300, Decimal("0.6"))],
        "r9": [("wallet", 100, Decimal("0.4"))],
    }
    assert used(account) == {"A": (1000, 0), "B": (500, None), "C": (600, 0), "D": (0, 1000)}
    assert selectors.wallet_balance(account) == Decimal("55.25")


def test_late_usage_adds_ledger_lines_instead_of_changing_old_ones(account, voided):
    before = set(WalletEntry.objects.filter(account=account).values_list("pk", "amount"))

    ingest(account, LATE)
    allocate(account, NOW)

    entries = WalletEntry.objects.filter(account=account)
    assert before <= set(entries.values_list("pk", "amount"))
    usage = entries.filter(kind=WalletEntryKind.USAGE_CHARGE).order_by("usage_day", "pk")
    assert [(e.usage_day.day, e.amount) for e in usage] == [
        (3, Decimal("-0.05")),
        (12, Decimal("-0.2")),
        (12, Decimal("-0.5")),  # the late record's effect, posted as a new line
        (21, Decimal("-0.6")),
        (22, Decimal("-0.4")),
    ]
    kinds = sorted((e.kind, e.amount) for e in entries.exclude(kind=WalletEntryKind.USAGE_CHARGE))
    assert kinds == [
        ("adjustment", Decimal("-100")),
        ("adjustment", Decimal("-5")),
        ("plan_purchase", Decimal("-8")),
        ("top_up", Decimal("20")),
        ("top_up", Decimal("50")),
        ("top_up", Decimal("100")),
    ]


def test_balances_mid_month_count_only_what_was_in_effect(account, voided):
    ingest(account, LATE)
    allocate(account, at(7))  # as of 7 March: nothing has expired yet

    statuses = {s.purchase.idempotency_key: s for s in selectors.plan_statuses(account, now=at(7))}
    assert {k: s.tokens_remaining for k, s in statuses.items()} == {"A": 0, "B": 0, "C": 150, "D": 1000}
    # D starts on the 8th: only C's 150 tokens are usable on the 7th.
    assert selectors.token_balance(list(statuses.values()), now=at(7)) == 150
    assert not PlanExpiry.objects.filter(account=account).exists()


def test_each_wallet_charge_is_explained_by_the_record_it_came_from(account, voided):
    ingest(account, LATE)
    allocate(account, NOW)

    lines = selectors.explain_record(UsageRecord.objects.get(account=account, request_id="r7"))
    assert [(line.purchase_name, line.tokens, line.amount, line.record_cost) for line in lines] == [
        ("Extra", 150, None, Decimal("1")),
        ("wallet", 350, Decimal("0.7"), Decimal("1")),
    ]


def test_every_change_is_in_the_audit_trail(account, voided):
    actions = list(AuditEvent.objects.filter(account=account).order_by("pk").values_list("action", flat=True))
    assert actions.count("purchase.recorded") == 5
    assert actions.count("purchase.voided") == 1
    assert actions.count("wallet.recorded") == 4
    assert actions.count("wallet.reversed") == 1
    void = AuditEvent.objects.get(account=account, action="purchase.voided")
    assert void.actor_label == "tests"
    assert void.before["voided_at"] is None
    assert void.after["void_reason"] == "entered twice"
