"""Clients that send slowly, or never finish, hold only their own connection: others are served.

The endpoint behind the control plane takes one request at a time, so if a slow client's request
held that slot, or the server's attention, the normal request below could not be answered.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from tests.reliability.conftest import HeldEndpoint

SLOW_CLIENTS = 8
BOUND_S = 60  # generous: past this a socket read counts as hanging


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=BOUND_S)


def _invocation_head(endpoint: HeldEndpoint, body_length: int) -> bytes:
    return (f"POST /endpoints/{endpoint.name}/invocations HTTP/1.1\r\nHost: localhost\r\n"
            f"Content-Type: application/json\r\nContent-Length: {body_length}\r\n\r\n").encode()


@contextlib.contextmanager
def slow_clients(endpoint: HeldEndpoint) -> Iterator[None]:
    """Half trickle a 1000-byte body a byte at a time, half send the headers and two bytes and stop."""
    stop = threading.Event()
    sockets = [_connect(endpoint.control_plane.url) for _ in range(SLOW_CLIENTS)]

    def trickle(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while not stop.wait(0.2):
                sock.sendall(b" ")

    threads = []
    for index, sock in enumerate(sockets):
        sock.sendall(_invocation_head(endpoint, 1000) + b'{"')
        if index % 2 == 0:
            threads.append(threading.Thread(target=trickle, args=(sock,), daemon=True))
            threads[-1].start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(BOUND_S)
        for sock in sockets:
            sock.close()


def test_slow_and_unfinished_uploads_do_not_delay_a_normal_invocation(queueing_endpoint):
    endpoint = queueing_endpoint
    endpoint.rearm()
    client = endpoint.runtime_client()  # read timeout 90 s: a starved request fails rather than hangs
    with slow_clients(endpoint):
        for index in range(3):
            answer = client.invoke_endpoint(EndpointName=endpoint.name, ContentType="application/json",
                                            Body=json.dumps({"id": f"normal-{index}"}))
            assert json.loads(answer["Body"].read()) == {"id": f"normal-{index}"}
        # The control plane's other routes answer too while the slow uploads are still open.
        described = endpoint.session.sagemaker_client.describe_endpoint(EndpointName=endpoint.name)
        assert described["EndpointStatus"] == "InService"


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_client_that_stops_sending_is_answered_408_and_disconnected(impatient_endpoint):
    """The control plane drops a client silent for longer than its client timeout (2 s here)."""
    endpoint = impatient_endpoint
    with _connect(endpoint.control_plane.url) as stalled_body, _connect(endpoint.control_plane.url) as stalled_head:
        stalled_body.sendall(_invocation_head(endpoint, 1000) + b'{"id"')
        stalled_head.sendall(b"POST /endpoints/")  # not even a whole request line

        answer = _read_all(stalled_body)  # bounded by the socket's 60 s timeout
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        error = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert error["__type"] == "RequestTimeout" and "did not arrive whole" in error["message"]
        assert _read_all(stalled_head) == b""  # closed without an answer: there was no request to answer
