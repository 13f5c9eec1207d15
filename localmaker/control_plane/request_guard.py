"""Refuses requests that a web page, not an AWS client, made: the first check every request passes.

The control plane runs code (CreateTrainingJob, an endpoint's inference.py) for whoever can reach it and
verifies no signature, so a browser must not be able to drive it:

- **DNS rebinding.** A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 reaches the loopback
  port with ``Host: evil.example``. A Host header that is not a loopback name or address (or the address
  the server was bound to) is refused, unless ``--host`` opened the server to other machines, where any
  name may legitimately reach it.
- **Cross-origin requests.** Browsers send ``Origin`` with every cross-origin request, and a "simple"
  one (a plain-text POST, say) goes out without a preflight: only the server can stop it from running.
  A request whose Origin is neither the server's own nor listed in ``LOCALMAKER_ALLOWED_ORIGINS`` is
  refused. AWS clients (boto3, the SDKs, the CLI) never send Origin, so they are not affected.

Refusals are AWS-shaped ``AccessDenied`` (403) answers in the request's protocol, raised before the body
is read or anything else runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from localmaker.control_plane.answers import Environ
from localmaker.control_plane.api_errors import AccessDenied
from localmaker.spec.hosts import host_name, is_loopback


class RequestGuard:
    """Checks a request's Host and Origin; ``check`` raises AccessDenied for a request it refuses."""

    def __init__(self, bound_host: str, allowed_origins: Iterable[str] = ()) -> None:
        self._bound = host_name(bound_host)
        # Bound beyond loopback (``localmaker up --host 0.0.0.0``): other machines reach it under names
        # this process cannot know, so the Host header tells nothing.
        self.open_to_network = not is_loopback(self._bound)
        self._allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    def check(self, environ: Environ) -> None:
        host = str(environ.get("HTTP_HOST") or "")
        if not self.open_to_network and not self._local_host(host):
            raise AccessDenied(
                f"the Host header {host!r} names no loopback address: the control plane answers only "
                "localhost, 127.0.0.0/8 and ::1, so that a web page cannot reach it through DNS rebinding. "
                "Use http://127.0.0.1:<port> as the endpoint URL, or start it with `localmaker up --host "
                "<address>` to serve other names")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self._allowed_origin(str(origin), host):
            raise AccessDenied(
                f"cross-origin request from {origin!r} refused: the control plane deploys and runs code, so a "
                "web page may not call it. AWS clients send no Origin header; to allow a local web app, list "
                "its origin in LOCALMAKER_ALLOWED_ORIGINS")
        if environ.get("HTTP_SEC_FETCH_SITE", "").lower() == "cross-site":  # a browser that sent no Origin
            raise AccessDenied("cross-site request refused: the control plane deploys and runs code, so a web "
                               "page may not call it")

    def _local_host(self, host: str) -> bool:
        name = host_name(host)
        return bool(name) and (is_loopback(name) or name == self._bound)

    def _allowed_origin(self, origin: str, host: str) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if origin in self._allowed_origins:
            return True
        parts = urlsplit(origin)
        # Same origin: a page this server itself served (it serves none today, but a same-origin request
        # is no attack). ``Origin: null`` (a sandboxed frame, a file:// page) has no authority and fails.
        return parts.scheme in ("http", "https") and bool(parts.netloc) and parts.netloc == host.strip().lower()
