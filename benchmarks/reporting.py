"""What every CPU benchmark prints around its numbers: the machine it ran on, and markdown tables.

Tables are markdown so that a run's output pastes into docs/benchmarks.md unchanged.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Sequence

from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE


def machine_line() -> str:
    """Cores, load and torch build: absolute numbers mean nothing without them on a shared machine."""
    import torch

    device = f"cuda ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "cpu"
    return (f"machine: {os.cpu_count()} cores ({platform.machine()}, {load_line()}); "
            f"python {platform.python_version()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
            f"device {device}")


def load_line() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine shows up here, and in the numbers."""
    try:
        return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "load average unknown"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The first column left-aligned (labels), the others right-aligned (numbers)."""
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = [headers, align, *rows]
    return "\n".join("| " + " | ".join(str(cell) for cell in line) + " |" for line in lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile: an observed value, never an interpolation between two."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]
