"""Copies each instance's and training job's log file into CloudWatch Logs (moto), as SageMaker does.

Endpoint containers log to ``/aws/sagemaker/Endpoints/<name>`` with one stream per instance; training
jobs to ``/aws/sagemaker/TrainingJobs`` with a stream per job (``localmaker.spec.names`` names both
groups). ``logs.get_log_events`` then works the same way it does against AWS.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MAX_BATCH = 1000  # PutLogEvents' own limit on events per call


@dataclass
class _Source:
    group: str
    stream: str
    path: Path
    offset: int = 0
    pending: bytes = b""
    created: bool = False


class LogShipper:
    def __init__(self, logs_client: Callable[[], Any], interval_s: float = 1.0) -> None:
        self._client = logs_client
        self._interval_s = interval_s
        self._sources: dict[tuple[str, str], _Source] = {}
        self._lock = threading.Lock()
        self._ship_lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def follow(self, group: str, stream: str, path: Path) -> None:
        with self._lock:
            self._sources[(group, stream)] = _Source(group, stream, path)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
                self._thread.start()

    def release(self, group: str, stream: str | None = None) -> None:
        """Ship what is left of a group's (or one stream's) files, then stop following them."""
        with self._lock:
            keys = [k for k in self._sources if k[0] == group and (stream is None or k[1] == stream)]
            sources = [self._sources.pop(k) for k in keys]
        for source in sources:
            self._ship(source, final=True)

    def flush(self) -> None:
        with self._lock:
            sources = list(self._sources.values())
        for source in sources:
            self._ship(source)

    def stop(self) -> None:
        self._stopped.set()
        self.flush()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self.flush()

    def _ship(self, source: _Source, final: bool = False) -> None:
        with self._ship_lock:  # the shipping thread and release() must not send the same bytes twice
            try:
                self._ship_locked(source, final)
            except Exception:  # noqa: BLE001 - losing a log line must never fail an endpoint or a job
                logger.exception("could not ship %s to CloudWatch Logs %s/%s", source.path, source.group,
                                 source.stream)

    def _ship_locked(self, source: _Source, final: bool) -> None:
        try:
            with open(source.path, "rb") as handle:
                handle.seek(source.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        source.offset += len(chunk)
        lines = (source.pending + chunk).split(b"\n")
        source.pending = b"" if final else lines.pop()
        messages = [line.decode("utf-8", "replace") for line in lines if line.strip()]
        if not messages:
            return
        client = self._client()
        if not source.created:
            for call, kwargs in ((client.create_log_group, {"logGroupName": source.group}),
                                 (client.create_log_stream, {"logGroupName": source.group,
                                                             "logStreamName": source.stream})):
                with contextlib.suppress(client.exceptions.ResourceAlreadyExistsException):
                    call(**kwargs)
            source.created = True
        now = int(time.time() * 1000)
        for start in range(0, len(messages), MAX_BATCH):
            events = [{"timestamp": now, "message": m} for m in messages[start:start + MAX_BATCH]]
            client.put_log_events(logGroupName=source.group, logStreamName=source.stream, logEvents=events)
