"""The instance's front door: each request is read whole on the worker's event loop before a thread serves it.

gunicorn's gthread worker gives a connection to a pool thread once its first bytes arrive, and the thread
then reads headers and body with blocking calls that have no deadline. A client that trickles or stalls
held a thread for as long as it liked, so 40 of them (the pool has 32) blocked every other caller; a
stalled body was never answered. This worker reads every request, headers and body (chunked or not), with
the poller that gunicorn already runs for kept-alive connections, so a slow client costs a buffer, never
a thread. Only a complete request goes to the pool. Meanwhile, as the control plane does (docs/reliability.md,
"Slow clients"):

- a body over the 6 MB limit, declared or found while reading a chunked one, is answered 413 at once and
  never reaches the app;
- a client silent for LOCALMAKER_CLIENT_TIMEOUT seconds is answered 408 if it stopped inside its body, or
  disconnected if it never finished its headers;
- the socket a thread then reads and writes has that same timeout, so a client that stops reading its
  answer cannot hold the thread either;
- the bytes a worker holds for requests not yet taken by the app (being read, or whole and waiting for a
  thread) are bounded in all (LOCALMAKER_INSTANCE_BUFFER_MB): a connection whose bytes would go over is
  answered 503 InstanceBusy, which the control plane sends on to another instance. Without it, 1,000
  connections each sending 6 MB held 6 GB.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from localmaker.local_endpoint.errors import InstanceBusy
from localmaker.local_endpoint.request_framing import CONTINUE, RequestFraming, Verdict
from localmaker.local_endpoint.settings import client_timeout, request_buffer_bytes
from localmaker.spec.names import MAX_PAYLOAD_BYTES

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
LINGER_S = 2.0  # after a refusal, how long unread bytes are drained so the answer is not lost to a reset


class BufferBudget:
    """The request bytes one worker holds in all; its event loop takes, the app's threads give back."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if self.held + size > self.limit:
                return False
            self.held += size
            return True

    def give(self, size: int) -> None:
        if size:
            with self._lock:
                self.held -= size


class PrefixedSocket:
    """A client socket whose first bytes (those the front read) are served again to gunicorn's parser.

    Those bytes count against the worker's budget until the parser has read them, or the socket closes.
    """

    def __init__(self, sock: socket.socket, timeout_s: float, budget: BufferBudget) -> None:
        self.raw = sock
        self._timeout_s = timeout_s
        self._budget = budget
        self._prefix = memoryview(b"")
        self._lock = threading.Lock()  # the event loop and a thread may both close it

    def give_back(self, data: bytes) -> None:
        """``data`` was counted by the front; from now it counts until it is read."""
        self._prefix = memoryview(data)

    def take_prefix(self) -> bytes:
        with self._lock:
            rest, self._prefix = bytes(self._prefix), memoryview(b"")
        self._budget.give(len(rest))
        return rest

    def recv(self, size: int, flags: int = 0) -> bytes:
        if self._prefix:
            with self._lock:
                chunk, self._prefix = bytes(self._prefix[:size]), self._prefix[size:]
            self._budget.give(len(chunk))
            return chunk
        return self.raw.recv(size, flags)

    def close(self) -> None:
        self.take_prefix()
        self.raw.close()

    def setblocking(self, flag: bool) -> None:
        # gunicorn's threads switch the socket to blocking to serve it: blocking with a deadline instead.
        self.raw.settimeout(self._timeout_s if flag else 0.0)

    def fileno(self) -> int:
        return self.raw.fileno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


@dataclass
class _Reading:
    framing: RequestFraming
    deadline: float
    continued: bool = False
    held: int = 0  # bytes taken from the worker's budget


@dataclass
class _Lingering:
    deadline: float
    drained: int = field(default=0)


def _refusal(status: int, reason: str, code: str, message: str) -> bytes:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


class BufferingThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, with requests read whole on its event loop (see the module's doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client_timeout_s = float(client_timeout(os.environ))
        self.max_body_bytes = MAX_PAYLOAD_BYTES
        self.budget = BufferBudget(request_buffer_bytes(os.environ))
        self._reading: dict[TConn, _Reading] = {}
        self._lingering: dict[TConn, _Lingering] = {}

    def accept(self, listener: socket.socket) -> None:
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = PrefixedSocket(client_sock, self.client_timeout_s, self.budget)
        self.enqueue_req(TConn(self.cfg, sock, client_addr, listener.getsockname()))

    def enqueue_req(self, conn: TConn) -> None:
        """Start reading the connection's next request; a thread takes it once it is whole."""
        conn.sock.setblocking(False)
        reading = _Reading(RequestFraming(self.max_body_bytes), time.monotonic() + self.client_timeout_s)
        # Bytes already read past the previous request (a pipelining client) belong to this one.
        leftover = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        leftover += conn.sock.take_prefix()
        if leftover and not self._hold(conn, reading, len(leftover)):
            return
        verdict = reading.framing.feed(leftover) if leftover else Verdict.NEED_MORE
        if verdict is Verdict.NEED_MORE:
            self._reading[conn] = reading
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            self._maybe_continue(conn, reading)
        else:
            self._conclude(conn, reading, verdict)

    def _on_readable(self, conn: TConn, _fileobj: object) -> None:
        reading = self._reading[conn]
        try:
            data = conn.sock.raw.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        self.poller.unregister(conn.sock)
        del self._reading[conn]
        if not data:  # the client hung up before its request was whole: nothing to answer
            self.budget.give(reading.held)
            self._close(conn)
            return
        if not self._hold(conn, reading, len(data)):
            return
        reading.deadline = time.monotonic() + self.client_timeout_s
        verdict = reading.framing.feed(data)
        if verdict is Verdict.NEED_MORE:
            self._reading[conn] = reading
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
            self._maybe_continue(conn, reading)
        else:
            self._conclude(conn, reading, verdict)

    def _hold(self, conn: TConn, reading: _Reading, size: int) -> bool:
        """Count ``size`` more bytes of this request, or refuse it where the worker holds too many already."""
        if self.budget.take(size):
            reading.held += size
            return True
        self.budget.give(reading.held)
        reading.held = 0
        self._refuse(conn, _refusal(
            503, "Service Unavailable", InstanceBusy.code,
            f"this instance already holds {self.budget.limit // 1024**2} MB of requests it is reading or about "
            "to serve (LOCALMAKER_INSTANCE_BUFFER_MB); retry in a moment"))
        return False

    def _maybe_continue(self, conn: TConn, reading: _Reading) -> None:
        if reading.framing.wants_continue and not reading.continued:
            reading.continued = True
            with contextlib.suppress(OSError):  # a client gone or not reading: its request ends by the timeout
                conn.sock.raw.send(CONTINUE)

    def _conclude(self, conn: TConn, reading: _Reading, verdict: Verdict) -> None:
        framing = reading.framing
        if verdict in (Verdict.COMPLETE, Verdict.HAND_ON):
            whole = bytes(framing.buffer)
            self.budget.give(reading.held - len(whole))  # what it holds counts on, until the app reads it
            conn.sock.give_back(whole)
            conn.data_ready = True  # gthread would otherwise wait for the socket to be readable again
            super().enqueue_req(conn)
            return
        self.budget.give(reading.held)
        if verdict is Verdict.BODY_TOO_LARGE:
            self._refuse(conn, _refusal(
                413, "Payload Too Large", "PayloadTooLarge",
                f"request body is over the {self.max_body_bytes}-byte SageMaker real-time limit; send less "
                "data per request or use batch transform"))
        else:
            self._refuse(conn, _refusal(
                431, "Request Header Fields Too Large", "RequestHeaderFieldsTooLarge",
                f"the request's header section is over {framing.max_head_bytes} bytes; send fewer or "
                "shorter headers"))

    def _refuse(self, conn: TConn, answer: bytes) -> None:
        """Answer without the app, then drain what the client still sends for a moment before closing:
        closing with unread bytes would reset the connection, and the client might never read why."""
        logger.info("refused a request before it reached the app: %s", answer.split(b"\r\n", 1)[0].decode())
        try:
            conn.sock.raw.send(answer)  # a few hundred bytes: they fit in the socket's send buffer
            conn.sock.raw.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        self._lingering[conn] = _Lingering(time.monotonic() + LINGER_S)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn))

    def _on_lingering_readable(self, conn: TConn, _fileobj: object) -> None:
        lingering = self._lingering[conn]
        try:
            data = conn.sock.raw.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        lingering.drained += len(data)
        if not data or lingering.drained > 2 * self.max_body_bytes:
            self._end_linger(conn)

    def _end_linger(self, conn: TConn) -> None:
        del self._lingering[conn]
        self.poller.unregister(conn.sock)
        self._close(conn)

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gthread's sweep of idle connections, extended to requests still being read and to refusals."""
        super().murder_pending()
        now = time.monotonic()
        for conn, reading in [(c, r) for c, r in self._reading.items() if r.deadline <= now]:
            del self._reading[conn]
            self.poller.unregister(conn.sock)
            self.budget.give(reading.held)
            if reading.framing.in_body:
                self._refuse(conn, _refusal(
                    408, "Request Timeout", "RequestTimeout",
                    f"the request body stopped arriving for {self.client_timeout_s:g} s "
                    "(LOCALMAKER_CLIENT_TIMEOUT); send the whole body without pausing"))
            else:  # never finished its headers: there is no request to answer
                self._close(conn)
        for conn in [c for c, lingering in self._lingering.items() if lingering.deadline <= now]:
            self._end_linger(conn)
