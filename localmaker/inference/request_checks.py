"""Type and field checks shared by the embedding and the image request schemas.

Every failure is an ``InvalidInput`` (400) whose message names the field and says what to send.
"""

from __future__ import annotations

import math
from typing import Any

from serving_errors import InvalidInput


def type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def is_int(value: Any) -> bool:
    """JSON ``true`` is a bool, not a count: bool is excluded although Python calls it an int."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def check_keys(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(repr(k) for k in unknown)} in {where}: "
            f"allowed fields are {', '.join(allowed)}."
        )
