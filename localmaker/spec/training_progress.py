"""The line a training script prints to report its progress, and its one parser.

``[localmaker:progress] step=3 total=40 loss=0.071450`` reaches the control plane (metrics, the
FinalMetricDataList) and the client (a progress bar). The built-in script keeps its own copy of the
format, held equal to this one by a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "[localmaker:progress]"
# Python prints a float that overflowed or went wrong as inf, -inf or nan; they are losses all the same.
_LINE = re.compile(re.escape(PREFIX) + r" step=(?P<step>\d+) total=(?P<total>\d+) "
                   r"loss=(?P<loss>[-+]?(?:inf|nan|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?))(?:\s|$)")


@dataclass(frozen=True)
class ProgressLine:
    step: int
    total: int
    loss: float


def format_progress(step: int, total: int, loss: float) -> str:
    return f"{PREFIX} step={step} total={total} loss={loss:.6f}"


def parse_progress(line: str) -> ProgressLine | None:
    """The progress a line reports, wherever it sits in the line; None for any other line."""
    match = _LINE.search(line)
    if match is None:
        return None
    return ProgressLine(int(match["step"]), int(match["total"]), float(match["loss"]))
