"""How many cases each fuzz test sent and how many got a 5xx, printed at the end of the run
(tests/conftest.py's pytest_terminal_summary), so the test output shows the fuzzing done."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Tally:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, status: int) -> None:
        self.cases += 1
        self.statuses[status] += 1

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self) -> str:
        by_class = Counter()
        for status, n in self.statuses.items():
            by_class[f"{status // 100}xx"] += n
        classes = ", ".join(f"{n} × {name}" for name, n in sorted(by_class.items()))
        return f"{self.cases} cases ({classes}); {self.server_errors} × 5xx"


TALLIES: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally())
