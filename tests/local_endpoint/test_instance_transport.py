"""How far an exchange with an instance got decides what a caller may do next; real sockets show each case."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest
import urllib3

from localmaker.local_endpoint.instance_transport import (
    ConnectionDropped,
    InstanceUnreachable,
    NoAnswer,
    mapped_transport_errors,
)


def _post(url: str, timeout: float = 5.0) -> urllib3.BaseHTTPResponse:
    with mapped_transport_errors():
        return urllib3.PoolManager(retries=False).request("POST", f"{url}/invocations", body=b"{}", timeout=timeout)


@pytest.fixture
def listener() -> Iterator[Callable[[Callable[[socket.socket], None]], str]]:
    """A loopback server whose one connection is handled by the function given."""
    sockets: list[socket.socket] = []

    def serve(handle: Callable[[socket.socket], None]) -> str:
        server = socket.create_server(("127.0.0.1", 0))
        sockets.append(server)

        def accept_one() -> None:
            connection, _ = server.accept()
            with connection:
                handle(connection)

        threading.Thread(target=accept_one, daemon=True).start()
        return f"http://127.0.0.1:{server.getsockname()[1]}"

    yield serve
    for server in sockets:
        server.close()


def test_a_port_nobody_listens_on_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(InstanceUnreachable, match="could not be reached"):
        _post(f"http://127.0.0.1:{port}")


def test_a_connection_closed_before_any_answer_is_dropped(listener):
    url = listener(lambda connection: (connection.recv(65536), connection.close()))
    with pytest.raises(ConnectionDropped, match="did not answer"):
        _post(url)


def test_an_instance_that_never_answers_leaves_no_answer(listener):
    release = threading.Event()
    url = listener(lambda connection: (connection.recv(65536), release.wait(5)))
    try:
        with pytest.raises(NoAnswer, match="did not answer"):
            _post(url, timeout=0.3)
    finally:
        release.set()


def test_a_whole_answer_passes_through(listener):
    url = listener(lambda connection: (connection.recv(65536), connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")))
    assert _post(url).data == b"{}"
