"""Hostile clients on an instance's own port, with no control plane in front: what the instance itself does.

Raw sockets, so the tests control every byte and every pause: a chunked body over the 6 MB limit, bodies
and headers that stop arriving, and many slow connections at once against an instance of 4 threads.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.spec.names import MAX_PAYLOAD_BYTES
from tests.reliability.conftest import held_endpoint
from tests.reliability.direct_instance import invoke, running_instance

CLIENT_TIMEOUT_S = 3
THREADS = 4
SLOW_CLIENTS = 40

# Each body that reaches input_fn leaves a file named after its size, so a test can tell that nothing
# of a refused request ever reached the handler.
RECORDING_HANDLER = """
    import json
    import os
    from pathlib import Path

    def model_fn(model_dir):
        return None

    def input_fn(body, content_type):
        (Path(os.environ["LOCALMAKER_MODEL_DIR"]) / f"body-{len(body)}").touch()
        return json.loads(body)

    def predict_fn(data, model):
        return {"id": data["id"]}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstanceProcess]:
    env = {"LOCALMAKER_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT_S), "LOCALMAKER_SERVER_THREADS": str(THREADS)}
    with running_instance(tmp_path_factory.mktemp("attacked"), env, RECORDING_HANDLER) as running:
        yield running


def _connect(instance: InstanceProcess | str) -> socket.socket:
    """A raw connection to an instance (or to the instance at a URL)."""
    parts = urlsplit(instance) if isinstance(instance, str) else urlsplit(instance.url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def _head(length: int | None = None, chunked: bool = False) -> bytes:
    framing = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    return f"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n{framing}\r\n".encode()


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or 30 s pass): a refusal closes the connection."""
    chunks = []
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _bodies_seen(instance: InstanceProcess) -> set[str]:
    return {path.name for path in instance.model_dir.glob("body-*")}


def _chunked(payload: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(payload), size):
        piece = payload[start:start + size]
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def test_a_chunked_body_over_the_limit_is_a_413_and_never_reaches_the_handler(instance):
    before = _bodies_seen(instance)
    payload = json.dumps({"id": "big", "pad": "x" * (7 * 1024 * 1024)}).encode()
    sock = _connect(instance)

    def send() -> None:
        with contextlib.suppress(OSError):  # the server stops reading once it has refused
            sock.sendall(_head(chunked=True))
            for piece in _chunked(payload, 64 * 1024):
                sock.sendall(piece)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = _answer(sock)
    sender.join(30)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "PayloadTooLarge"
    assert _bodies_seen(instance) == before  # neither the whole body nor a truncated one was processed


def test_a_declared_length_over_the_limit_is_refused_before_the_body_is_sent(instance):
    with _connect(instance) as sock:
        sock.sendall(_head(MAX_PAYLOAD_BYTES + 1))
        assert _answer(sock).startswith(b"HTTP/1.1 413 ")


@pytest.mark.parametrize("piece_size", [1, 4096])
def test_a_chunked_body_within_the_limit_is_served_whole(instance, piece_size):
    payload = json.dumps({"id": f"chunked-{piece_size}", "pad": "y" * 300_000 if piece_size > 1 else ""}).encode()
    with _connect(instance) as sock:
        sock.sendall(_head(chunked=True) + b"".join(_chunked(payload, piece_size)))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200 "), head[:300]
    assert f"body-{len(payload)}" in _bodies_seen(instance)


def test_a_body_that_stops_arriving_is_answered_408_within_the_client_timeout(instance):
    with _connect(instance) as sock:
        sock.sendall(_head(1000) + b'{"id": ')
        started = time.monotonic()
        answer = _answer(sock)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "RequestTimeout"
    assert waited < CLIENT_TIMEOUT_S + 2


def test_headers_that_stop_arriving_are_disconnected_within_the_client_timeout(instance):
    with _connect(instance) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: loc")
        started = time.monotonic()
        assert _answer(sock) == b""
        assert time.monotonic() - started < CLIENT_TIMEOUT_S + 2


@contextlib.contextmanager
def slow_clients(instance: InstanceProcess | str) -> Iterator[list[socket.socket]]:
    """Half trickle a body a byte every 0.2 s, half trickle their headers: none ever falls silent."""
    stop = threading.Event()
    sockets = [_connect(instance) for _ in range(SLOW_CLIENTS)]
    for index, sock in enumerate(sockets):
        sock.sendall(_head(100_000) + b'{"' if index % 2 else b"POST /invocations HTTP/1.1\r\n")

    def trickle() -> None:
        while not stop.wait(0.2):
            for index, sock in enumerate(sockets):
                with contextlib.suppress(OSError):
                    sock.sendall(b" " if index % 2 else b"X-Slow: 1\r\n")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield sockets
    finally:
        stop.set()
        thread.join(10)
        for sock in sockets:
            sock.close()


def test_many_slow_connections_do_not_delay_a_normal_invocation(instance):
    took = []
    with slow_clients(instance):
        time.sleep(0.5)  # every slow connection has been accepted and is being read
        for index in range(5):
            started = time.monotonic()
            status, _, body = invoke(instance.url, json.dumps({"id": f"normal-{index}"}).encode(), timeout_s=30)
            took.append(round(time.monotonic() - started, 3))
            assert (status, json.loads(body)) == (200, {"id": f"normal-{index}"})
    print(f"\nnormal invocations among {SLOW_CLIENTS} slow connections took {took} s")
    assert max(took) < 1.0


def test_invoke_endpoint_answers_while_slow_connections_crowd_the_instance_port(tmp_path: Path, localmaker_home):
    """The issue's own case: the slow connections on the instance port, the normal call through InvokeEndpoint."""
    with held_endpoint(tmp_path, ControlPlaneSettings()) as endpoint:
        url = endpoint.session.local_endpoint(endpoint.name).instances[0].url
        client = endpoint.runtime_client()
        took = []
        with slow_clients(url):
            time.sleep(0.5)
            for index in range(3):
                started = time.monotonic()
                answer = client.invoke_endpoint(EndpointName=endpoint.name, ContentType="application/json",
                                                Body=json.dumps({"id": f"normal-{index}"}))
                took.append(round(time.monotonic() - started, 3))
                assert json.loads(answer["Body"].read()) == {"id": f"normal-{index}"}
    print(f"\nInvokeEndpoint among {SLOW_CLIENTS} slow connections on the instance port took {took} s")
    assert max(took) < 2.0


def _read_responses(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` whole responses with Content-Length bodies, in order, from a kept-alive connection."""
    data, responses = b"", []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, rest = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            rest += sock.recv(65536)
        responses.append(head + b"\r\n\r\n" + rest[:length])
        data = rest[length:]
    return responses


def test_pipelined_and_kept_alive_requests_are_each_answered(instance):
    bodies = [json.dumps({"id": f"pipelined-{index}"}).encode() for index in range(3)]
    requests = [_head(len(body)) + body for body in bodies]
    with _connect(instance) as sock:
        sock.sendall(requests[0] + requests[1])  # two at once: the second is read ahead with the first
        first, second = _read_responses(sock, 2)
        sock.sendall(requests[2])  # and the connection is still good for a third
        (third,) = _read_responses(sock, 1)
    for index, response in enumerate([first, second, third]):
        assert response.startswith(b"HTTP/1.1 200 "), response[:200]
        assert json.loads(response.split(b"\r\n\r\n", 1)[1]) == {"id": f"pipelined-{index}"}


def test_expect_100_continue_gets_one_interim_answer_then_the_response(instance):
    body = json.dumps({"id": "continued"}).encode()
    with _connect(instance) as sock:
        sock.sendall(_head(len(body))[:-2] + b"Expect: 100-continue\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        (response,) = _read_responses(sock, 1)
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]  # not a second "100 Continue"


@pytest.mark.parametrize("extra_header", [
    "Host: evil.example",                      # DNS rebinding: the page's own name, pointed at 127.0.0.1
    "Host: 127.0.0.1.evil.example:8080",       # a name that only starts like an address
    "Origin: http://evil.example",             # a "simple" cross-origin POST (text/plain needs no preflight)
    "Origin: null",                            # a sandboxed frame or a file:// page
    "Sec-Fetch-Site: cross-site",              # a browser that sent no Origin
])
def test_a_request_a_web_page_made_is_refused_403_before_the_handler(instance, extra_header: str):
    payload = b'{"id": "from-a-web-page"}'
    host = "" if extra_header.startswith("Host:") else "Host: 127.0.0.1\r\n"
    head = (f"POST /invocations HTTP/1.1\r\n{host}{extra_header}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with _connect(instance) as sock:
        sock.sendall(head + payload)
        answer = _answer(sock)
    status, _, body = answer.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 403"), answer[:300]
    assert json.loads(body)["error"]["code"] == "AccessDenied"
    assert f"body-{len(payload)}" not in _bodies_seen(instance)  # input_fn never ran
    status_after, _, body_after = invoke(instance.url, b'{"id": "after"}')
    assert (status_after, json.loads(body_after)) == (200, {"id": "after"})  # and the instance keeps serving


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "[::1]", "sub.localhost"])
def test_loopback_hosts_are_served(instance, host: str):
    payload = json.dumps({"id": f"via-{host}"}).encode()
    head = (f"POST /invocations HTTP/1.1\r\nHost: {host}:{urlsplit(instance.url).port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n").encode()
    with _connect(instance) as sock:
        sock.sendall(head + payload)
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
