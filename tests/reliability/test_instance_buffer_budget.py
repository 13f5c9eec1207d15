"""An instance holds a bounded number of request bytes in all, however many clients send at once.

Each worker reads requests whole before a thread takes them (request_front.py), so the bytes of requests
being read, or whole and waiting for a thread, sit in its memory. Without a bound, 1,000 connections each
sending most of a 6 MB body held 6 GB. Here the bound is LOCALMAKER_INSTANCE_BUFFER_MB, set small.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from localmaker.control_plane.instance_process import InstanceProcess
from tests.reliability.direct_instance import invoke, running_instance

BUDGET_MB = 8
MB = 1024 * 1024

ECHO_SIZE = """
    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return str(len(body)), "text/plain"
"""


@pytest.fixture(scope="module")
def instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InstanceProcess]:
    env = {"LOCALMAKER_INSTANCE_BUFFER_MB": str(BUDGET_MB), "LOCALMAKER_CLIENT_TIMEOUT": "30"}
    with running_instance(tmp_path_factory.mktemp("budget"), env, ECHO_SIZE) as running:
        yield running


def _stalled(instance: InstanceProcess, declared: int, sent: int) -> socket.socket:
    """A connection that declared a ``declared``-byte body, sent ``sent`` bytes of it, and stopped."""
    parts = urlsplit(instance.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(f"POST /invocations HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode())
    with contextlib.suppress(OSError):  # a refused one may stop reading
        sock.sendall(b"x" * sent)
    return sock


def _refusal(sock: socket.socket) -> bytes:
    sock.settimeout(1)
    try:
        return sock.recv(65536)
    except TimeoutError:
        return b""  # still being read: no answer yet


def _answers(socks: list[socket.socket]) -> list[bytes]:
    return [_refusal(sock) for sock in socks]


def test_connections_beyond_the_budget_are_answered_503_and_the_rest_are_served(instance):
    # 3 x 3 MB go over the 8 MB budget: whichever crosses it (the worker reads all three at once) is refused.
    stalled = [_stalled(instance, 5 * MB, 3 * MB) for _ in range(3)]
    try:
        answers = _answers(stalled)
        refused = [answer for answer in answers if answer]
        assert len(refused) == 1, answers
        status, _, body = refused[0].partition(b"\r\n\r\n")
        assert status.startswith(b"HTTP/1.1 503"), refused[0][:300]
        error = json.loads(body)["error"]
        assert error["code"] == "InstanceBusy" and "LOCALMAKER_INSTANCE_BUFFER_MB" in error["message"]
        assert invoke(instance.url, b"x" * MB)[::2] == (200, str(MB).encode())  # 6 + 1 MB: within the budget
    finally:
        for sock in stalled:
            sock.close()


def test_the_budget_comes_back_whole_after_served_refused_and_abandoned_requests(instance):
    for _round in range(3):
        abandoned = [_stalled(instance, 5 * MB, 5 * MB // 2) for _ in range(4)]  # 3 fit; one is refused
        assert sum(1 for answer in _answers(abandoned) if answer.startswith(b"HTTP/1.1 503")) == 1
        for sock in abandoned:
            sock.close()
        time.sleep(0.3)  # the worker's event loop sees the hang-ups
        assert invoke(instance.url, b"y" * (5 * MB))[::2] == (200, str(5 * MB).encode())
    # Nothing leaked: a request that needs nearly all of the budget still fits beside another one.
    held = _stalled(instance, 5 * MB, 2 * MB)
    try:
        assert invoke(instance.url, b"z" * (5 * MB + MB // 2))[::2] == (200, str(5 * MB + MB // 2).encode())
    finally:
        held.close()


def test_a_bad_budget_setting_fails_the_start_with_the_variable_named(tmp_path: Path):
    with pytest.raises(Exception, match="LOCALMAKER_INSTANCE_BUFFER_MB"), \
            running_instance(tmp_path, {"LOCALMAKER_INSTANCE_BUFFER_MB": "0"}, ECHO_SIZE):
        pass
