"""One lock per resource name, so that what moto records and what the runtime runs change together.

A create and a delete of one endpoint each touch two places: moto's record and the runtime's processes.
Run side by side, their halves could interleave (the create's record, the delete's record and runtime,
then the create's runtime) and leave a ghost that serves invocations while Describe, List and Delete
cannot see it. Holding the name's lock across both halves makes each call whole to the other.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # holders and waiters: the entry goes when the last one leaves, so memory stays bounded


class NameLocks:
    """Locks made on first use of a name and dropped when nobody holds or waits for them."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[str, _Entry] = {}

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[None]:
        with self._guard:
            entry = self._entries.setdefault(name, _Entry())
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[name]

    def __len__(self) -> int:
        with self._guard:
            return len(self._entries)
