"""Media-type names and the small parsing rules every part of the container shares."""

from __future__ import annotations

from localmaker.spec.media_types import JSON, NPY, media_type

__all__ = ["JSON", "NPY", "accepted", "concrete", "media_type", "preferred"]


def accepted(accept: str | None) -> list[str]:
    """The media types of an Accept header, in the order given: ``'a/b, c/d;q=0.5'`` → ``['a/b', 'c/d']``."""
    return [kind for part in (accept or "").split(",") if (kind := media_type(part))]


def preferred(accept: str | None, offered: tuple[str, ...]) -> str | None:
    """The first accepted type we offer (a wildcard takes the first offered of its range); no Accept
    means ``offered[0]``; None when nothing offered is acceptable."""
    kinds = accepted(accept)
    if not kinds:
        return offered[0]
    for kind in kinds:
        in_range = [offer for offer in offered if kind == "*/*" or offer == kind
                    or (kind.endswith("/*") and offer.startswith(kind[:-1]))]
        if in_range:
            return in_range[0]
    return None


def concrete(accept: str | None) -> str:
    """The type to label a body with when a hook returned bytes alone: the first accepted type that is
    not a wildcard, else JSON (the toolkits' default)."""
    return next((kind for kind in accepted(accept) if "*" not in kind), JSON)
