"""Streamed answers: a handler that returns an iterator of chunks is answered with chunked HTTP.

The rule, as SageMaker's streaming containers apply it (TorchServe's intermediate responses, LMI's
JSON-lines token stream, TGI's per-token events): when ``predict_fn``, ``output_fn`` or ``transform_fn``
returns an *iterator* (a generator, or anything with ``__next__``), possibly as ``(iterator,
content_type)``, each item it yields is one chunk, sent as soon as it is produced:

- ``bytes`` go as they are, ``str`` as UTF-8;
- any other item (a dict, a list, a number) as one JSON line, ``json.dumps(item) + "\\n"``, the way LMI
  streams JSON Lines;
- an empty item sends nothing (an empty HTTP chunk would end the response).

A list, tuple, dict or tensor is a whole answer, as before: only an iterator streams. The container's
answer is labelled with the tuple's content type, or else the request's Accept, as whole answers are.

The iterator is advanced on the model thread (one model call at a time per process, see
``model_executor``), and its chunks reach the request thread through a small bounded queue: a slow
client holds the model thread back rather than piling the answer up in memory.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# Chunks produced but not yet sent: enough to keep the model busy while the socket drains.
RELAY_DEPTH = 16


@dataclass
class ChunkStream:
    """A handler's streamed answer: chunk bytes as they come, and the answer's Content-Type."""

    chunks: Iterator[bytes]
    content_type: str


def is_chunk_iterator(result: Any) -> bool:
    """Whether a hook's result streams: an iterator, never a whole value (bytes, str, list, dict, tuple)."""
    return isinstance(result, Iterator) and not isinstance(result, bytes | str | dict | list | tuple)


def as_chunks(items: Iterator[Any]) -> Iterator[bytes]:
    """The bytes each yielded item is sent as (the rule in this module's docstring); empty ones are skipped."""
    for item in items:
        if isinstance(item, bytes | bytearray | memoryview):
            chunk = bytes(item)
        elif isinstance(item, str):
            chunk = item.encode("utf-8")
        else:
            try:
                chunk = (json.dumps(item) + "\n").encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"the handler's stream yielded a {type(item).__name__}, which cannot be sent ({exc}); "
                    "yield bytes, str, or a JSON-serialisable value"
                ) from None
        if chunk:
            yield chunk


@dataclass(frozen=True)
class _Failed:
    """The exception that ended a relayed stream, raised on the request thread."""

    error: BaseException


_END = object()  # the end of a relayed stream


class RelayAbandoned(Exception):
    """The request side stopped reading (the client left, or it timed out): the model thread stops too."""


class Relay:
    """Items from the model thread to the request thread, through a bounded queue, in order.

    The model thread ``pump``s the handler's iterator; the request thread iterates ``RelayedItems``.
    Either side can give up: an exception in the iterator reaches the reader after the items before it,
    and a reader that ``abandon``s makes the pump stop at its next item (and close the handler's
    generator). A reader that takes nothing for ``stall_timeout_s`` while the queue is full counts as
    gone, so the model thread is never held forever by a reader that vanished without saying so.
    """

    def __init__(self, stall_timeout_s: float, depth: int = RELAY_DEPTH) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._abandoned = threading.Event()
        self._stall_timeout_s = stall_timeout_s

    # -- the model thread

    def pump(self, items: Iterator[Any], on_item: Callable[[], None] | None = None) -> None:
        """Advance ``items`` to the end, handing each on; ``on_item()`` after each (a heartbeat)."""
        try:
            for item in items:
                if on_item is not None:
                    on_item()
                self._put(item)
            self._put(_END)
        except RelayAbandoned:
            pass
        except BaseException as exc:  # noqa: BLE001 - the request thread raises it, after the items before it
            with contextlib.suppress(RelayAbandoned):
                self._put(_Failed(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator stopped early runs its finally blocks now, on the model thread

    def _put(self, item: Any) -> None:
        deadline = time.monotonic() + self._stall_timeout_s
        while True:
            if self._abandoned.is_set() or time.monotonic() > deadline:
                self._abandoned.set()
                raise RelayAbandoned()
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    # -- the request thread

    def take(self, timeout_s: float) -> Any:
        """The next item, ``_END`` at the end; raises the iterator's exception, or queue.Empty after ``timeout_s``."""
        item = self._queue.get(timeout=timeout_s)
        if isinstance(item, _Failed):
            raise item.error
        return item

    def abandon(self) -> None:
        self._abandoned.set()


class RelayedItems(Iterator[Any]):
    """The request thread's side of a relay: each item as the model thread hands it on.

    ``on_silence`` is called when nothing came for ``timeout_s`` (it raises the timeout). Closing it, or
    dropping it unread (an encoder that failed before reading), abandons the relay, so the model thread
    moves on at once.
    """

    def __init__(self, relay: Relay, timeout_s: float, on_silence: Callable[[], None]) -> None:
        self._relay = relay
        self._timeout_s = timeout_s
        self._on_silence = on_silence

    def __next__(self) -> Any:
        try:
            item = self._relay.take(self._timeout_s)
        except queue.Empty:
            self.close()
            self._on_silence()
            raise
        except BaseException:
            self.close()
            raise
        if item is _END:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._relay.abandon()

    def __del__(self) -> None:
        self._relay.abandon()
