"""The one warning every server command prints when ``--host`` reaches beyond this machine."""

from __future__ import annotations

import ipaddress
import sys

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach. A hostname other than localhost may resolve to
    anything, so it counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(host: str, what: str) -> None:
    """Say on stderr that ``what`` (which runs model code) can be reached from other machines.

    Nothing stops it: binding elsewhere is the user's explicit choice through ``--host``.
    """
    if not is_loopback(host):
        print(f"[localmaker] warning: binding {host} exposes {what} to other machines, and nothing "
              f"authenticates its callers; use {LOOPBACK} (the default) unless you mean it",
              file=sys.stderr, flush=True)
