"""Which local addresses a TCP port listens on, read from /proc/net/tcp{,6} (any process's sockets)."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

LISTEN = "0A"


def _address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    # The kernel prints each 32-bit word in host (little-endian) order.
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(ordered))


def listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if fields[3] == LISTEN and int(port_hex, 16) == port:
                found.add(_address(address))
    return found


def wait_for_listener(port: int, timeout_s: float = 120.0) -> set[str]:
    """The addresses once something listens on ``port``; fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not (addresses := listening_addresses(port)):
        assert time.monotonic() < deadline, f"nothing listened on port {port} within {timeout_s:.0f} s"
        time.sleep(0.1)
    return addresses
