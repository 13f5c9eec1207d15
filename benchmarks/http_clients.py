"""Concurrent kept-alive clients for an embedding server's HTTP API: one text per request, every latency kept.

The throughput and peer benchmarks load every server through this one client, so a difference between
servers cannot come from how they were asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import urllib3


@dataclass(frozen=True)
class HttpApi:
    """How one server is asked for one text's vector, and where the vector is in its answer."""

    path: str
    body: Callable[[str], dict[str, Any]]
    vector: Callable[[dict[str, Any]], list[float]]


LOCALMAKER_API = HttpApi("/invocations", lambda text: {"inputs": [text]}, lambda answer: answer["embeddings"][0])


class EndpointClients:
    """``count`` client threads, each with its own kept-alive connection to one server."""

    def __init__(self, url: str, count: int, api: HttpApi = LOCALMAKER_API, timeout_s: float = 300.0) -> None:
        parts = urlsplit(url)
        self.api = api
        self.pools = [urllib3.HTTPConnectionPool(parts.hostname or "127.0.0.1", parts.port, maxsize=1, block=True,
                                                 retries=False, timeout=timeout_s) for _ in range(count)]
        self.latencies: list[float] = []  # seconds per request, of the latest embed_all

    def embed_all(self, texts: Sequence[str]) -> tuple[float, np.ndarray]:
        """Send every text as its own request from all clients at once; wall seconds and the vectors."""
        vectors: list[Any] = [None] * len(texts)
        latencies: list[float] = []
        errors: list[str] = []
        next_index = iter(range(len(texts)))
        lock = threading.Lock()
        start = threading.Barrier(len(self.pools) + 1)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}

        def client(pool: urllib3.HTTPConnectionPool) -> None:
            start.wait()
            while not errors:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                sent = time.perf_counter()
                try:
                    answer = pool.request("POST", self.api.path, body=json.dumps(self.api.body(texts[index])),
                                          headers=headers)
                except urllib3.exceptions.HTTPError as exc:
                    errors.append(repr(exc))
                    return
                if answer.status != 200:
                    errors.append(f"HTTP {answer.status}: {answer.data[:300]!r}")
                    return
                vectors[index] = self.api.vector(json.loads(answer.data))
                with lock:
                    latencies.append(time.perf_counter() - sent)

        threads = [threading.Thread(target=client, args=(pool,), daemon=True) for pool in self.pools]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        if errors:
            raise RuntimeError(f"a request to {self.pools[0].host}:{self.pools[0].port} failed: {errors[0]}")
        self.latencies = latencies
        return seconds, np.asarray(vectors, dtype=np.float32)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
