"""Slow connections cannot multiply the control plane's threads: beyond its cap they wait, then are refused.

Before: werkzeug started a thread per connection, without a limit (507 threads seen). The control plane
runs in this process here, so its threads are this process's threads and can be counted.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

from localmaker.control_plane import connection_limits
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.spec.names import LOCAL_CREDENTIALS

MAX_CONNECTIONS = 8
MAX_WAITING = 4
SLOW = 60


@contextlib.contextmanager
def stalled_connections(url: str, count: int) -> Iterator[list[socket.socket]]:
    """Connections that send half a request line and then nothing, as a slowloris client does."""
    parts = urlsplit(url)
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            sock.sendall(b"POST /endpoints/x/invoc")
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _wait_for(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    # The client timeout stays long (the default is 60 s): the slow clients are not simply timed out.
    settings = ControlPlaneSettings(max_connections=MAX_CONNECTIONS, max_waiting_connections=MAX_WAITING,
                                    client_timeout_s=60)
    control_plane = ControlPlane(work_root=tmp_path / "plane", settings=settings).start()
    try:
        yield control_plane
    finally:
        control_plane.stop()


def test_slow_connections_hold_at_most_the_cap_and_a_normal_call_still_answers(plane):
    before = threading.active_count()
    with stalled_connections(plane.url, SLOW):
        server = plane._server
        _wait_for(lambda: server.refused >= SLOW - MAX_CONNECTIONS - MAX_WAITING)
        threads = threading.active_count() - before
        assert threads <= MAX_CONNECTIONS, threads  # 60 before the cap
        assert server.busy_threads == MAX_CONNECTIONS
        # A normal call is answered long before the 60 s client timeout: botocore retries the refusal's 503,
        # and once its whole request waits for a thread, a thread still reading a stalled head is freed for it.
        sagemaker = boto3.client("sagemaker", endpoint_url=plane.url, region_name="us-east-1",
                                 config=Config(retries={"max_attempts": 10, "mode": "standard"}), **LOCAL_CREDENTIALS)
        for _ in range(3):
            started = time.monotonic()
            assert isinstance(sagemaker.list_endpoints()["Endpoints"], list)  # moto's records are the process's
            assert time.monotonic() - started < 15
        assert threading.active_count() - before <= MAX_CONNECTIONS
        assert server.evicted >= 1
    _wait_for(lambda: plane._server.busy_threads == 0)  # every thread came back once the clients left


def test_beyond_the_cap_and_the_queue_the_answer_is_an_aws_shaped_503(plane, monkeypatch):
    monkeypatch.setattr(connection_limits, "HEAD_GRACE_S", 600)  # the waiting clients are not yet given up on
    with stalled_connections(plane.url, MAX_CONNECTIONS + MAX_WAITING) as sockets:
        _wait_for(lambda: plane._server.busy_threads == MAX_CONNECTIONS)
        _wait_for(lambda: len(plane._server._waiting) == MAX_WAITING)
        parts = urlsplit(plane.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as extra:
            extra.sendall(b"GET /_localmaker/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while chunk := extra.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 503 ") and b"Retry-After: 1" in answer
        assert b'"__type": "ServiceUnavailable"' in answer and b"LOCALMAKER_MAX_CONNECTIONS" in answer
        assert len(sockets) == MAX_CONNECTIONS + MAX_WAITING
