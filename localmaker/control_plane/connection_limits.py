"""werkzeug's threaded server with a bound on its threads: a thread per connection, up to a limit.

werkzeug starts a thread for every accepted connection, with no limit: 507 slow clients held 507
threads. Here at most ``max_threads`` connections are served at once. Connections beyond that wait,
already accepted and holding no thread, for the next free one (first come, first served); beyond
``max_waiting`` of those, a connection is answered ``503 ServiceUnavailable`` with ``Retry-After`` at
once and closed, which botocore retries by itself. Each served connection is still bounded by the
client timeout, so a thread held by a silent client comes back; a freed thread takes a waiting connection
whose request has arrived before one still trickling its headers. And while complete requests wait, a
thread whose client has sent no whole request head in HEAD_GRACE_S is freed for them (as nginx's
client_header_timeout would, but only under pressure): slow clients cannot starve normal calls.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import socket
import threading
import time
from typing import Any

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

logger = logging.getLogger(__name__)

_Connection = tuple[Any, Any]  # (socket, client address), as socketserver hands them over
# While complete requests wait for a thread, a thread still reading a request head after this long is
# freed for them (its client has been sending headers slowly, or nothing).
HEAD_GRACE_S = 2.0


def _refusal(max_threads: int, max_waiting: int) -> bytes:
    body = json.dumps({"__type": "ServiceUnavailable", "message": (
        f"the control plane is serving {max_threads} connections and {max_waiting} more are waiting "
        "(LOCALMAKER_MAX_CONNECTIONS, LOCALMAKER_MAX_WAITING_CONNECTIONS); retry after a second")}).encode()
    head = ("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"x-amzn-ErrorType: ServiceUnavailable\r\nRetry-After: 1\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head + body


def _head_arrived(sock: socket.socket) -> bool:
    try:
        peeked = sock.recv(65536, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except OSError:  # nothing yet (EAGAIN), or the client is gone: either way not ready to serve
        return False
    return b"\r\n\r\n" in peeked or not peeked  # a closed connection is served (and dropped) at once


class BoundedThreadedWSGIServer(ThreadedWSGIServer):
    """A ThreadedWSGIServer whose threads, and the connections waiting for one, are bounded."""

    def __init__(self, *args: Any, max_threads: int, max_waiting: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_threads = max_threads
        self.max_waiting = max_waiting
        self._busy = 0
        self._waiting: collections.deque[tuple[Any, Any, float]] = collections.deque()  # (socket, address, since)
        self._slots = threading.Lock()
        self.refused = 0  # connections answered 503 at once, for tests and the log
        self.evicted = 0  # slow head readers dropped for complete requests
        self._reading_heads: dict[Any, float] = {}  # socket -> when its thread began reading the request head

    def head_started(self, sock: Any) -> None:
        with self._slots:
            self._reading_heads[sock] = time.monotonic()

    def head_finished(self, sock: Any) -> None:
        with self._slots:
            self._reading_heads.pop(sock, None)

    def service_actions(self) -> None:
        """Called by serve_forever between connections (at least every half second): a complete request
        waiting for a thread takes one from a client that is still sending its headers after HEAD_GRACE_S."""
        super().service_actions()
        with self._slots:
            complete = sum(1 for connection in self._waiting if _head_arrived(connection[0]))
            now = time.monotonic()
            stalled = sorted((started, id(sock), sock) for sock, started in self._reading_heads.items()
                             if now - started > HEAD_GRACE_S)[:complete]
            for _started, _id, sock in stalled:
                del self._reading_heads[sock]
        for _started, _id, sock in stalled:
            self.evicted += 1
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # its thread's read returns; werkzeug closes the connection

    @property
    def busy_threads(self) -> int:
        with self._slots:
            return self._busy

    def process_request(self, request: Any, client_address: Any) -> None:
        dropped = None
        with self._slots:
            start = refuse = False
            if self._busy < self.max_threads:
                self._busy += 1
                start = True
            elif len(self._waiting) < self.max_waiting or (dropped := self._stalled_waiting()) is not None:
                self._waiting.append((request, client_address, time.monotonic()))
            else:
                self.refused += 1
                refuse = True
        if refuse:
            self._refuse(request)
        if dropped is not None:  # a waiting client still without a whole request head gives way to a new one
            self.evicted += 1
            self.shutdown_request(dropped)
        if start:
            super().process_request(request, client_address)

    def _stalled_waiting(self) -> Any:
        """Removes and returns the oldest waiting socket whose client has sent no whole request head in
        HEAD_GRACE_S, if any."""
        now = time.monotonic()
        for entry in self._waiting:
            if now - entry[2] > HEAD_GRACE_S and not _head_arrived(entry[0]):
                self._waiting.remove(entry)
                return entry[0]
        return None

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve this connection, then the waiting ones, on the same thread, until none waits."""
        connection: _Connection | None = (request, client_address)
        while connection is not None:
            super().process_request_thread(*connection)
            with self._slots:
                connection = self._next_waiting()
                if connection is None:
                    self._busy -= 1

    def _next_waiting(self) -> _Connection | None:
        """The first waiting connection whose request head has arrived whole, else the oldest: a client that
        trickles its headers (a slowloris) does not make complete requests behind it wait for its turn."""
        for index, (sock, address, _since) in enumerate(self._waiting):
            if _head_arrived(sock):
                del self._waiting[index]
                return sock, address
        return self._waiting.popleft()[:2] if self._waiting else None

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)
            request.recv(65536)  # what the client sent already: closing on unread bytes would reset, not answer
        except OSError:
            pass
        try:
            request.settimeout(1.0)  # a few hundred bytes into a fresh socket's buffer: never a wait
            request.sendall(_refusal(self.max_threads, self.max_waiting))
        except OSError:
            pass
        finally:
            self.shutdown_request(request)
        logger.info("refused a connection: %d served and %d waiting already", self.max_threads, self.max_waiting)

    def server_close(self) -> None:
        with self._slots:
            waiting, self._waiting = list(self._waiting), collections.deque()
        for request, _address, _since in waiting:
            self.shutdown_request(request)
        super().server_close()


class HeadTrackingRequestHandler(WSGIRequestHandler):
    """Tells a BoundedThreadedWSGIServer while its thread reads a request head, so that the thread can be
    freed for a complete request when the server is full (``service_actions``)."""

    def setup(self) -> None:
        super().setup()
        if isinstance(self.server, BoundedThreadedWSGIServer):
            self.server.head_started(self.connection)

    def parse_request(self) -> bool:
        try:
            return bool(super().parse_request())
        finally:
            self._head_done()

    def finish(self) -> None:
        self._head_done()  # a client that never sent a whole head
        super().finish()

    def _head_done(self) -> None:
        if isinstance(self.server, BoundedThreadedWSGIServer):
            self.server.head_finished(self.connection)
