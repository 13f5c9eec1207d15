"""The model thread: batches form from requests that arrive together, fail alone, and never hang."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from localmaker.local_endpoint.model_executor import ModelExecutor, ModelTimedOut


class Recorder:
    """A run_batch that records each batch it was given; "poison" fails a whole batch."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        if "poison" in items:
            raise ValueError("poison in the batch")
        return [ValueError(f"refused {item}") if item == "refuse" else f"done {item}" for item in items]


def _concurrently(executor: ModelExecutor, run: Recorder, items: list[str]) -> list[Any]:
    """Every request announces itself, waits until all have, then submits: as requests being decoded."""
    all_announced = threading.Barrier(len(items))

    def one(item: str) -> Any:
        with executor.arriving() as submit:
            all_announced.wait(timeout=10)
            try:
                return submit(item, run)
            except Exception as exc:  # noqa: BLE001 - the answer under test
                return exc

    with ThreadPoolExecutor(len(items)) as pool:
        return list(pool.map(one, items))


def test_requests_that_arrive_together_run_as_one_batch_and_each_gets_its_own_answer():
    executor, run = ModelExecutor(max_batch_size=8, max_delay_s=10.0, timeout_s=30), Recorder()
    answers = _concurrently(executor, run, ["a", "b", "c", "d"])
    assert answers == ["done a", "done b", "done c", "done d"]
    assert len(run.batches) == 1 and sorted(run.batches[0]) == ["a", "b", "c", "d"]


def test_a_lone_request_waits_for_nobody():
    # With a 60 s delay, waiting for a batch would outlast the 5 s timeout and fail this test.
    executor, run = ModelExecutor(max_batch_size=8, max_delay_s=60.0, timeout_s=5), Recorder()
    with executor.arriving() as submit:
        assert submit("alone", run) == "done alone"
    assert run.batches == [["alone"]]


def test_a_request_that_fails_before_the_model_releases_the_batch_waiting_for_it():
    executor, run = ModelExecutor(max_batch_size=8, max_delay_s=60.0, timeout_s=5), Recorder()
    with pytest.raises(RuntimeError), executor.arriving():
        raise RuntimeError("malformed body: never submitted")
    with executor.arriving() as submit:
        assert submit("next", run) == "done next"


def test_the_batch_size_caps_a_batch():
    executor, run = ModelExecutor(max_batch_size=2, max_delay_s=10.0, timeout_s=30), Recorder()
    answers = _concurrently(executor, run, ["a", "b", "c", "d", "e"])
    assert answers == [f"done {x}" for x in "abcde"]
    assert all(len(batch) <= 2 for batch in run.batches)
    assert sorted(item for batch in run.batches for item in batch) == list("abcde")  # none lost, none twice


def test_a_failing_request_fails_alone():
    executor, run = ModelExecutor(max_batch_size=8, max_delay_s=10.0, timeout_s=30), Recorder()
    answers = _concurrently(executor, run, ["a", "poison", "b", "refuse"])
    assert answers[0] == "done a" and answers[2] == "done b"
    assert isinstance(answers[1], ValueError) and "poison" in str(answers[1])
    assert isinstance(answers[3], ValueError) and str(answers[3]) == "refused refuse"
    # The failed batch was retried request by request, so each ran exactly once more, alone.
    whole, *singles = run.batches
    assert sorted(whole) == sorted(["a", "poison", "b", "refuse"])
    assert sorted(batch[0] for batch in singles) == sorted(whole) and all(len(b) == 1 for b in singles)


def test_solo_calls_run_one_at_a_time_on_the_model_thread():
    executor = ModelExecutor(max_batch_size=8, max_delay_s=0.01, timeout_s=30)
    running, overlaps, threads = [0], [], set()
    lock = threading.Lock()

    def call() -> str:
        with lock:
            running[0] += 1
            overlaps.append(running[0])
            threads.add(threading.current_thread().name)
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return "ok"

    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda _: executor.run(call), range(6))) == ["ok"] * 6
    assert max(overlaps) == 1 and threads == {"model-executor"}


def test_a_stuck_model_call_times_out_and_asks_for_a_new_worker():
    stuck = threading.Event()
    retire_requests = []
    executor = ModelExecutor(max_batch_size=1, max_delay_s=0, timeout_s=0.5,
                             on_stuck=lambda: retire_requests.append("retire"))
    with pytest.raises(ModelTimedOut, match="SAGEMAKER_MODEL_SERVER_TIMEOUT=0.5s") as timed_out:
        executor.run(lambda: stuck.wait(30))
    assert timed_out.value.status_code == 504
    with pytest.raises(ModelTimedOut):  # queued behind the stuck call: it times out too
        executor.run(lambda: retire_requests.append("ran after its caller gave up"))
    assert retire_requests == ["retire"]  # asked once, however many requests time out
    stuck.set()
    assert executor.run(lambda: "after") == "after"  # runs after the abandoned call would have
    assert retire_requests == ["retire"]  # so the abandoned call was skipped, not run for nobody


def test_a_system_exit_from_a_batch_fails_its_request_and_the_model_thread_serves_on():
    def exits(items: list[Any]) -> list[Any]:
        if "exit" in items:
            raise SystemExit("user code called sys.exit()")
        return [f"done {item}" for item in items]

    executor = ModelExecutor(max_batch_size=8, max_delay_s=0.01, timeout_s=5)
    with executor.arriving() as submit, pytest.raises(SystemExit):
        submit("exit", exits)
    with executor.arriving() as submit:  # the model thread survived: no 5 s timeout here
        assert submit("next", exits) == "done next"
