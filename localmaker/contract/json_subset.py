"""Does a JSON answer contain what an example expects? Objects by subset, lists item by item, numbers
within a tolerance.

An object may hold more keys than expected (a response grows fields; the example pins the ones it is
about), but a list must have exactly the expected length: a vector or a ranking with an extra or a
missing item is a different answer.
"""

from __future__ import annotations

from typing import Any


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return "a number" if _is_number(value) else names.get(type(value), type(value).__name__)


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


def json_mismatch(expected: Any, actual: Any, tolerance: float = 0.0, path: str = "$") -> str | None:
    """Where ``actual`` first departs from ``expected``, as ``"$.a[2]: expected ..., got ..."``; None if nowhere."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {_kind(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{_child(path, key)}: missing (the answer has {', '.join(map(repr, actual)) or 'no keys'})"
            found = json_mismatch(value, actual[key], tolerance, _child(path, key))
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected a list, got {_kind(actual)}"
        if len(expected) != len(actual):
            return f"{path}: expected {len(expected)} item(s), got {len(actual)}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = json_mismatch(want, got, tolerance, f"{path}[{index}]")
            if found:
                return found
        return None
    if _is_number(expected):
        if not _is_number(actual):
            return f"{path}: expected a number, got {_kind(actual)} {actual!r}"
        if abs(expected - actual) > tolerance:
            margin = f" ± {tolerance:g}" if tolerance else ""
            return f"{path}: expected {expected!r}{margin}, got {actual!r}"
        return None
    if type(expected) is not type(actual) or expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None
