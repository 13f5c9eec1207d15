"""Which Host names and addresses only this machine reaches: the control plane and every instance refuse
the others, so that a web page cannot reach them through DNS rebinding."""

from __future__ import annotations

import ipaddress

# RFC 6761: "localhost" and names under it resolve to loopback. botocore's virtual-hosted S3 addressing
# sends ``Host: <bucket>.localhost:<port>`` to an endpoint URL on localhost.
_LOOPBACK_NAME = "localhost"


def is_loopback(host: str) -> bool:
    """True for a name or address only this machine reaches: localhost (and names under it), 127.0.0.0/8, ::1."""
    host = host.strip("[]").lower().rstrip(".")
    if host == _LOOPBACK_NAME or host.endswith("." + _LOOPBACK_NAME):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(authority: str) -> str:
    """The name or address of a Host header or an origin's authority, without its port: ``[::1]:80`` -> ``::1``."""
    authority = authority.strip().lower()
    if authority.startswith("["):
        return authority[1:].split("]", 1)[0]
    if authority.count(":") == 1:
        return authority.rsplit(":", 1)[0]
    return authority
