"""The defaults the README and docs/reliability.md state are the code's own.

The docs once said an instance takes "1 × 4" requests in flight while the code said 1 × 32 (and 128
waiting). Each figure here is computed from the code's defaults, and the docs must state it; a stated
"default W × T" that differs fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from localmaker.control_plane.settings import DEFAULT_WORKERS, QUEUE_FACTOR, ControlPlaneSettings
from localmaker.local_endpoint.settings import DEFAULT_REQUEST_BUFFER_MB, DEFAULT_THREADS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
RELIABILITY = (ROOT / "docs" / "reliability.md").read_text()


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_default_capacity_is_stated_as_the_code_computes_it():
    per_instance = DEFAULT_WORKERS * DEFAULT_THREADS
    waiting = QUEUE_FACTOR * per_instance
    assert f"default {DEFAULT_WORKERS} × {DEFAULT_THREADS}: {per_instance} requests in flight per instance" \
        in _flat(RELIABILITY)
    assert f"({waiting} per instance by default)" in _flat(RELIABILITY)
    assert f"in flight: {per_instance} (limit {per_instance}), waiting: {waiting} (limit {waiting})" in RELIABILITY
    assert f"{DEFAULT_WORKERS} × {DEFAULT_THREADS} = {per_instance} per instance" in README
    assert f"waiting (default {QUEUE_FACTOR}×: {waiting} per instance)" in README
    assert f"request threads per worker (default {DEFAULT_THREADS}" in README
    for text in (README, RELIABILITY):  # whatever else says "default W × T" says the same
        for workers, threads in re.findall(r"default (\d+) × (\d+)\b(?!²)", _flat(text)):  # not a pixel budget
            assert (int(workers), int(threads)) == (DEFAULT_WORKERS, DEFAULT_THREADS)


def test_the_control_planes_other_defaults_are_stated_as_the_code_has_them():
    defaults = ControlPlaneSettings()
    for row in (f"seconds one may wait ({defaults.queue_timeout_s:g})",
                f"seconds a silent client is kept ({defaults.client_timeout_s:g})",
                f"one thread each ({defaults.max_connections}), and accepted ones waiting for a thread "
                f"({defaults.max_waiting_connections})",
                f"instances per instance type ({defaults.quota_instances_per_type}) and in all "
                f"({defaults.quota_instances_total})",
                f"what its work root may hold in all ({defaults.max_disk_bytes // 1024**3})",
                f"({defaults.log_stream_max_bytes} bytes, {defaults.log_stream_max_events} events)",
                f"rotated to `<file>.1` ({defaults.log_file_max_bytes // 1024**2})"):
        assert row in README, row
    assert f"default {defaults.client_timeout_s:g}" in RELIABILITY
    assert f"for requests not yet taken by the app ({DEFAULT_REQUEST_BUFFER_MB})" in README
    assert f"`LOCALMAKER_INSTANCE_BUFFER_MB` (default {DEFAULT_REQUEST_BUFFER_MB}" in RELIABILITY
