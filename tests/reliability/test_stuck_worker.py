"""A model call stuck past the timeout costs only its own request.

An instance of one worker runs a call that sleeps far past a 3 s model timeout. Its caller gets the 504;
the requests queued behind it, and every request after it, must be answered at once: a 503 with
Retry-After while the worker is replaced, then 200 from the fresh worker. Before the fix, each of them
waited its own whole timeout for the stuck model thread and got a 504 too.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tests.reliability.direct_instance import invoke, running_instance

TIMEOUT_S = 3
FAST_S = 2.0  # "at once": a refusal, or the wait for a fresh worker to boot, on a loaded machine


def _call(url: str, request_id: str, sleep_s: float = 0) -> tuple[int, dict[str, str], float]:
    started = time.monotonic()
    status, headers, _ = invoke(url, json.dumps({"id": request_id, "sleep": sleep_s}).encode(), timeout_s=60)
    return status, headers, time.monotonic() - started


def test_requests_after_a_stuck_call_are_answered_at_once_and_a_fresh_worker_takes_over(tmp_path: Path) -> None:
    env = {"SAGEMAKER_MODEL_SERVER_TIMEOUT": str(TIMEOUT_S), "SAGEMAKER_MODEL_SERVER_WORKERS": "1"}
    with running_instance(tmp_path, env) as instance:
        outcomes: dict[str, tuple[int, dict[str, str], float]] = {}

        def call(request_id: str, sleep_s: float = 0) -> None:
            outcomes[request_id] = _call(instance.url, request_id, sleep_s)

        stuck = threading.Thread(target=call, args=("stuck", 120))
        stuck.start()
        while not (instance.model_dir / "started-stuck").exists():
            time.sleep(0.02)
        queued = [threading.Thread(target=call, args=(f"queued-{index}",)) for index in range(3)]
        for thread in queued:
            thread.start()
        stuck.join(30)
        for thread in queued:
            thread.join(30)

        assert outcomes["stuck"][0] == 504
        for index in range(3):  # they arrived while the call was not yet past its timeout, and waited behind it
            status, headers, _ = outcomes[f"queued-{index}"]
            assert status == 503 and headers.get("Retry-After") == "1", outcomes[f"queued-{index}"]
        assert max(took for _, _, took in outcomes.values()) < TIMEOUT_S + FAST_S

        # After the stuck call's 504: every request is answered at once, and soon by a fresh worker.
        after_504 = time.monotonic()
        answers = []
        while True:
            status, headers, took = _call(instance.url, f"after-{len(answers)}")
            answers.append((status, round(took, 2)))
            assert took < FAST_S, answers
            assert status == 200 or (status == 503 and headers.get("Retry-After") == "1"), answers
            if status == 200:
                break
            assert time.monotonic() - after_504 < 30, f"no fresh worker within 30 s: {answers}"
            time.sleep(0.2)  # a client honouring Retry-After would wait longer
        print(f"\nstuck call answered in {outcomes['stuck'][2]:.1f} s; queued ones in "
              f"{[round(outcomes[f'queued-{i}'][2], 2) for i in range(3)]} s; after it: {answers}; "
              f"served again {time.monotonic() - after_504:.1f} s after the 504")
