"""The outcome of one contract check: what the table prints and the JUnit XML records."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass


class Outcome(enum.Enum):
    PASSED = "PASS"
    FAILED = "FAIL"
    SKIPPED = "SKIP"


@dataclass(frozen=True)
class CheckResult:
    name: str
    outcome: Outcome
    reason: str
    seconds: float = 0.0

    @classmethod
    def passed(cls, name: str, reason: str, seconds: float = 0.0) -> CheckResult:
        return cls(name, Outcome.PASSED, reason, seconds)

    @classmethod
    def failed(cls, name: str, reason: str, seconds: float = 0.0) -> CheckResult:
        return cls(name, Outcome.FAILED, reason, seconds)

    @classmethod
    def skipped(cls, name: str, reason: str) -> CheckResult:
        return cls(name, Outcome.SKIPPED, reason)


def count(results: Iterable[CheckResult]) -> Counter[Outcome]:
    return Counter(result.outcome for result in results)
