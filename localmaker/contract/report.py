"""The table ``localmaker contract-test`` prints: one row per check, its result and the reason."""

from __future__ import annotations

from collections.abc import Sequence

from localmaker.contract.results import CheckResult, Outcome, count


def format_table(results: Sequence[CheckResult]) -> str:
    width = max([len("CHECK"), *(len(result.name) for result in results)])
    lines = [f"{'CHECK':<{width}}  RESULT  REASON"]
    for result in results:
        reason = " ".join(result.reason.split())  # one line per check, whatever the message held
        lines.append(f"{result.name:<{width}}  {result.outcome.value:<6}  {reason}")
    return "\n".join(lines)


def summary(results: Sequence[CheckResult]) -> str:
    counts = count(results)
    return (f"{counts[Outcome.PASSED]} passed, {counts[Outcome.FAILED]} failed, "
            f"{counts[Outcome.SKIPPED]} skipped")
