"""Media-type names and the small parsing rules every part of the container shares."""

from __future__ import annotations

JSON = "application/json"
NPY = "application/x-npy"


def base_type(header: str | None) -> str:
    """``'application/json; charset=utf-8'`` → ``'application/json'``."""
    return (header or "").split(";", 1)[0].strip().lower()


def is_any(accept: str | None) -> bool:
    """True when the caller expressed no preference (no Accept, or a wildcard)."""
    kind = base_type(accept)
    return kind in ("", "*/*")
