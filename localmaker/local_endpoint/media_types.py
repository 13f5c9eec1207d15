"""Media-type names, and the rules by which the SageMaker containers read Content-Type and Accept.

The toolkits compare media types as strings: ``application/json; charset=utf-8`` is not
``application/json`` to them. The rules here do the same, so that what localmaker accepts a real
container accepts too.
"""

from __future__ import annotations

from localmaker.spec.media_types import JSON, NPY, media_type

__all__ = ["ANY", "CSV", "JSON", "NPY", "UTF8_TYPES", "accept_entries", "concrete", "media_type",
           "request_accept"]

CSV = "text/csv"
ANY = "*/*"
# Bodies of exactly these types reach the hooks as str, decoded as UTF-8 (content_types.UTF8_TYPES).
UTF8_TYPES = (JSON, CSV)


def request_accept(header: str | None, default_accept: str) -> str:
    """The Accept the hooks see: a missing or empty header, or exactly ``*/*``, becomes the default
    (``application/json``, or ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``), as the toolkits' request
    handling does; anything else is passed on as sent, ``*/*;q=0.8`` and lists included."""
    if not header or header == ANY:
        return default_accept
    return header


def accept_entries(accept: str) -> list[str]:
    """The types of an Accept list as the toolkit's default output_fn reads them (utils.parse_accept):
    spaces removed, split at commas, each compared exactly, parameters included."""
    return accept.replace(" ", "").split(",")


def concrete(accept: str | None) -> str:
    """The Content-Type of a body a hook returned without one.

    The toolkit labels it with the Accept as sent; that is the same for one concrete type. From a list,
    the first type that is not a wildcard (a list is no valid Content-Type), else JSON.
    """
    entries = [entry.strip() for entry in (accept or "").split(",") if entry.strip()]
    if len(entries) == 1 and "*" not in media_type(entries[0]):
        return entries[0]
    return next((kind for entry in entries if "*" not in (kind := media_type(entry)) and kind), JSON)
