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


def as_int(value: Any) -> int | None:
    """The whole number a JSON value stands for, or None. JSON has one number type, so ``20.0`` is 20 as
    much as ``20`` is (JSON Schema's "integer" agrees); ``20.5``, ``true`` and ``"20"`` are not."""
    if is_int(value):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def is_number(value: Any) -> bool:
    """A finite JSON number. Only floats go through ``math.isfinite``: it converts an int to float first, and
    an integer literal of 400 digits, valid JSON, would raise OverflowError there (a 500) instead of failing
    the range check that compares ints exactly."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))


def check_text(value: str, field: str) -> str:
    """Refuse a string holding half a surrogate pair, which JSON can escape (``"\\ud800"``) and json.loads keeps.

    It is not Unicode text: tokenizers reject it with a TypeError and UTF-8 cannot encode it, so letting it
    through turns a bad request into a 500 from the model.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            f'"{field}" holds an unpaired surrogate (\\u{ord(value[exc.start]):04x} at character {exc.start}), '
            "which is not text: send the character itself, or both halves of its UTF-16 surrogate pair."
        ) from None
    return value


def check_keys(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(repr(k) for k in unknown)} in {where}: "
            f"allowed fields are {', '.join(allowed)}."
        )
