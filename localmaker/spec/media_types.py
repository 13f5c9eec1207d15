"""Media-type names and the parsing rule every side shares."""

from __future__ import annotations

JSON = "application/json"
NPY = "application/x-npy"


def media_type(header: str | None) -> str:
    """``'Application/JSON; charset=utf-8'`` → ``'application/json'``; ``''`` when absent."""
    return (header or "").split(";", 1)[0].strip().lower()
