"""The load test, scaled down for CI: `python -m benchmarks.load` runs it full size (5,000 at 64)."""

from __future__ import annotations

import pytest

from benchmarks.load import ECHO_THREADS, deploy_echo_endpoint, run_load, worker_pids

pytestmark = pytest.mark.e2e


def test_every_request_is_answered_once_while_a_worker_is_killed(session, tmp_path):
    endpoint, ledger = deploy_echo_endpoint(session, tmp_path / "echo", instances=2, workers=2)
    instance = session.local_endpoint(endpoint).instances[0]
    workers_before = set(worker_pids(instance.pid))

    report = run_load(session, endpoint, ledger, requests=400, concurrency=16, kill_at=0.3, deadline_s=300)
    print("\n" + report.table())

    assert report.worker_killed in workers_before
    assert report.malformed == [] and report.lost == 0 and report.duplicated == 0
    assert report.ok + sum(report.clean_errors.values()) == 400
    # Only requests in flight on the killed worker may fail, and only as ModelError.
    assert set(report.clean_errors) <= {"ModelError 424"}
    assert sum(report.clean_errors.values()) <= ECHO_THREADS  # at most what one worker had in flight
    processed = ledger.read_text().split()
    assert len(processed) == len(set(processed)) >= report.ok

    # The instance recovered: gunicorn replaced the worker and every instance answers again.
    assert set(worker_pids(instance.pid)) - workers_before, "the killed worker was not replaced"
    again = run_load(session, endpoint, ledger, requests=40, concurrency=4, kill_at=None)
    assert again.ok == 40, again.table()
    session.sagemaker_client.delete_endpoint(EndpointName=endpoint)
