"""The requests that break the contract on purpose, each built from a request the endpoint declared.

Only one thing is wrong in each (the Content-Type, the Accept, the syntax or the size), so the answer
says how the handler treats exactly that mistake.
"""

from __future__ import annotations

from collections.abc import Iterable

from localmaker.contract.examples import is_json_type
from localmaker.contract.instance_client import ProbeRequest
from localmaker.spec.media_types import NPY, media_type

# A media type no handler decodes or produces.
UNSUPPORTED_TYPE = "application/x-localmaker-contract-unsupported"
TRUNCATED_JSON = b'{"inputs": "the body ends here'
BROKEN_NPY = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (1000,), }"


def unsupported_content_type(base: ProbeRequest) -> ProbeRequest:
    return ProbeRequest(base.body, UNSUPPORTED_TYPE, base.accept)


def unsupported_accept(base: ProbeRequest) -> ProbeRequest:
    return ProbeRequest(base.body, base.content_type, UNSUPPORTED_TYPE)


def malformed_bodies(content_types: Iterable[str], accept: str | None) -> list[ProbeRequest]:
    """A syntactically broken body for each declared type whose syntax is known: JSON and ``.npy``."""
    probes = []
    for content_type in dict.fromkeys(content_types):
        if is_json_type(content_type):
            probes.append(ProbeRequest(TRUNCATED_JSON, content_type, accept))
        elif media_type(content_type) == NPY:
            probes.append(ProbeRequest(BROKEN_NPY, content_type, accept))
    return probes


def oversized(base: ProbeRequest, limit_bytes: int) -> ProbeRequest:
    """The declared request padded past the limit with trailing spaces, which leave JSON valid: only the
    size is wrong."""
    padding = max(1, limit_bytes + 1 - len(base.body))
    return ProbeRequest(base.body + b" " * padding, base.content_type, base.accept)
