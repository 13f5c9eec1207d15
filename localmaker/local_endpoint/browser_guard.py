"""Refuses requests a web page made, before they reach the handler: an instance runs model code for its caller.

An instance binds loopback, and its only callers are the control plane, FakePredictor, the contract client
and the user's own scripts: none sends ``Origin`` or a ``Host`` other than the address they dialled. A
page whose name was re-pointed at 127.0.0.1 (DNS rebinding) arrives with its own name as Host; a page
posting across origins arrives with ``Origin`` (or, from a browser that omits it, ``Sec-Fetch-Site:
cross-site``). Both are refused with 403 ``AccessDenied``. ``localmaker serve --host`` binds beyond loopback
on purpose (LOCALMAKER_BIND_HOST), where other machines reach it under names this process cannot know, so
only the Host check is lifted there.
"""

from __future__ import annotations

from localmaker.local_endpoint.errors import Forbidden
from localmaker.spec.hosts import host_name, is_loopback


def check_browser_request(host: str, origin: str | None, fetch_site: str | None, bound_host: str) -> None:
    """Raise Forbidden for a foreign ``Host`` (on a loopback-bound instance), an ``Origin``, or a
    ``Sec-Fetch-Site`` of cross-site."""
    if host and is_loopback(host_name(bound_host)) and not is_loopback(host_name(host)):
        raise Forbidden(f"the Host header {host!r} names no loopback address: this instance answers only "
                        "localhost, 127.0.0.0/8 and ::1, so that a web page cannot reach it through DNS "
                        "rebinding; call it at http://127.0.0.1:<port>")
    if origin is not None:
        raise Forbidden(f"cross-origin request from {origin!r} refused: an instance runs model code, so a web "
                        "page may not call it; call it from a script or through the control plane")
    if (fetch_site or "").lower() == "cross-site":
        raise Forbidden("cross-site request refused: an instance runs model code, so a web page may not call it")
