"""The quota ledger, the disk budget and their settings, without processes (the e2e side:
tests/reliability/test_resource_limits.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localmaker.control_plane import service_quotas
from localmaker.control_plane.api_errors import ResourceLimitExceeded, ThrottlingException
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.control_plane.service_quotas import SERVERLESS, FleetUse, ServiceQuotas, Usage
from localmaker.control_plane.settings import ControlPlaneSettings
from localmaker.errors import ConfigurationError


def test_concurrent_creates_cannot_both_take_the_last_places():
    quotas = ServiceQuotas(per_type=4, total=100)
    quotas.watch(Usage.ENDPOINT, lambda _name: False)  # none registered yet: only the pending claims count
    admitted, refused = [], []
    barrier = threading.Barrier(16)

    def create(index: int) -> None:
        barrier.wait()
        try:
            quotas.admit(Usage.ENDPOINT, f"e{index}", {"v": ("ml.m5.large", 1)})
            admitted.append(index)
        except ResourceLimitExceeded:
            refused.append(index)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert (len(admitted), len(refused)) == (4, 12)


def test_a_claim_counts_while_its_owner_runs_and_stops_counting_after(monkeypatch):
    running = {"a"}
    quotas = ServiceQuotas(per_type=2, total=3)
    quotas.watch(Usage.TRAINING, lambda name: name in running)
    quotas.admit(Usage.TRAINING, "a", {"": ("ml.m5.large", 2)})
    with pytest.raises(ResourceLimitExceeded, match="'ml.m5.large for training job usage' is 2 Instances, with "
                                                    "current utilization of 2 Instances and a request delta of 1"):
        quotas.admit(Usage.TRAINING, "b", {"": ("ml.m5.large", 1)})
    quotas.admit(Usage.ENDPOINT, "b", {"v": ("ml.m5.large", 2)})  # another usage, its own quota
    running.clear()  # job "a" ended
    quotas.admit(Usage.TRAINING, "b", {"": ("ml.m5.large", 1)})
    quotas.settle(Usage.TRAINING, "b")  # its create failed: not running, no longer pending
    assert quotas.in_use(Usage.TRAINING) == {}
    monkeypatch.setattr(service_quotas, "PENDING_GRACE_S", 0.0)  # a create that never settled expires too
    quotas.admit(Usage.TRAINING, "c", {"": ("ml.m5.large", 2)})
    assert quotas.in_use(Usage.TRAINING) == {}


def test_an_endpoint_counts_its_fleet_and_an_update_both_fleets_only_while_it_runs():
    fleets: dict[str, FleetUse] = {}  # what the runtime would report, set by hand: the ledger alone is tested
    quotas = ServiceQuotas(per_type=4, total=5)
    quotas.watch_endpoints(fleets.get)
    quotas.admit(Usage.ENDPOINT, "e", {"a": ("ml.m5.large", 3)})
    fleets["e"] = FleetUse({"a": ("ml.m5.large", 3)}, changing=False)
    quotas.settle(Usage.ENDPOINT, "e")
    with pytest.raises(ResourceLimitExceeded, match="current utilization of 3 Instances and a request delta of 2"):
        quotas.admit(Usage.ENDPOINT, "e", {"a": ("ml.m5.large", 2)}, keep_current=True)
    quotas.admit(Usage.ENDPOINT, "e", {"b": ("ml.c5.xlarge", 1)}, keep_current=True)
    fleets["e"] = FleetUse({"a": ("ml.m5.large", 3)}, changing=True)
    quotas.settle(Usage.ENDPOINT, "e")  # the request is over; the update runs on
    assert quotas.in_use(Usage.ENDPOINT) == {"ml.m5.large": 3, "ml.c5.xlarge": 1}
    fleets["e"] = FleetUse({"a": ("ml.m5.large", 3)}, changing=False)  # it rolled back
    assert quotas.in_use(Usage.ENDPOINT) == {"ml.m5.large": 3}
    quotas.admit_scale("e", {"a": 4})
    with pytest.raises(ResourceLimitExceeded, match="'Number of instances across all endpoints' is 5"):
        quotas.admit(Usage.ENDPOINT, "f", {"a": ("ml.c5.xlarge", 2)})
    fleets["e"] = FleetUse({"a": ("ml.m5.large", 4), "s": (SERVERLESS, 1)}, changing=False)
    quotas.settle(Usage.ENDPOINT, "e")
    assert quotas.in_use(Usage.ENDPOINT) == {"ml.m5.large": 4, SERVERLESS: 1}
    with pytest.raises(ThrottlingException, match="the 5 instances running for endpoints fill the quota of 5"), \
            quotas.cold_start("e"):
        pass
    del fleets["e"]  # deleted
    assert quotas.in_use(Usage.ENDPOINT) == {}


def test_concurrent_cold_starts_cannot_both_take_the_last_place():
    quotas = ServiceQuotas(per_type=4, total=1)
    quotas.watch_endpoints(lambda _name: None)
    started, throttled = [], []
    barrier = threading.Barrier(2)
    release = threading.Event()

    def cold_start(name: str) -> None:
        barrier.wait()
        try:
            with quotas.cold_start(name):
                started.append(name)
                release.wait(5)  # still starting when the other one asks
        except ThrottlingException:
            throttled.append(name)
            release.set()

    threads = [threading.Thread(target=cold_start, args=(name,)) for name in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert (len(started), len(throttled)) == (1, 1)


def test_the_disk_budget_counts_what_the_work_root_holds(tmp_path: Path):
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    budget = DiskBudget(tmp_path, max_bytes=200_000)
    budget.check_room("endpoint 'e'", 50_000)
    with pytest.raises(ResourceLimitExceeded,
                       match=r"disk cap is 200,000 bytes.*needs 150,000 more.*LOCALMAKER_MAX_DISK_GB"):
        budget.check_room("endpoint 'e'", 150_000)


def test_the_limits_are_read_from_the_environment_once():
    settings = ControlPlaneSettings.from_env({
        "LOCALMAKER_MAX_CONNECTIONS": "8", "LOCALMAKER_MAX_WAITING_CONNECTIONS": "0",
        "LOCALMAKER_QUOTA_INSTANCES_PER_TYPE": "2", "LOCALMAKER_QUOTA_INSTANCES_TOTAL": "3",
        "LOCALMAKER_MAX_DISK_GB": "0.5", "LOCALMAKER_LOG_STREAM_MAX_EVENTS": "10",
        "LOCALMAKER_ALLOWED_ORIGINS": "http://localhost:3000/, https://App.example"})
    assert (settings.max_connections, settings.max_waiting_connections) == (8, 0)
    assert (settings.quota_instances_per_type, settings.quota_instances_total) == (2, 3)
    assert settings.max_disk_bytes == 512 * 1024**2 and settings.log_stream_max_events == 10
    assert settings.allowed_origins == ("http://localhost:3000", "https://app.example")
    with pytest.raises(ConfigurationError, match="LOCALMAKER_MAX_CONNECTIONS"):
        ControlPlaneSettings.from_env({"LOCALMAKER_MAX_CONNECTIONS": "0"})
    with pytest.raises(ConfigurationError, match="LOCALMAKER_LOG_STREAM_MAX_BYTES"):
        ControlPlaneSettings.from_env({"LOCALMAKER_LOG_STREAM_MAX_BYTES": "1000"})  # under one batch
