"""The model thread: batches form from requests that arrive together, fail alone, and never hang."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from localmaker.local_endpoint.errors import WorkerReplacing
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
    assert retire_requests == ["retire"]  # asked by the stuck call's own timeout, not a later request's
    started = time.monotonic()
    with pytest.raises(WorkerReplacing, match="being replaced") as refused:  # at once, not after a timeout
        executor.run(lambda: retire_requests.append("ran behind a stuck call"))
    assert time.monotonic() - started < 0.1
    assert refused.value.status == 503
    assert retire_requests == ["retire"]  # asked once, however many requests are refused
    stuck.set()
    deadline = time.monotonic() + 5
    while True:  # the stuck call ended after all: the executor serves again (outside gunicorn, nobody retires it)
        try:
            assert executor.run(lambda: "after") == "after"
            break
        except WorkerReplacing:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert retire_requests == ["retire"]  # the refused call never ran


def test_requests_queued_behind_a_call_that_gets_stuck_are_refused_when_it_does_not_at_their_own_timeout():
    stuck = threading.Event()
    executor = ModelExecutor(max_batch_size=1, max_delay_s=0, timeout_s=1.0)
    outcomes: dict[str, object] = {}

    def stuck_call() -> None:
        with contextlib.suppress(ModelTimedOut):
            executor.run(lambda: stuck.wait(30))

    def queued_call() -> None:
        started = time.monotonic()
        try:
            executor.run(lambda: "ran")
        except WorkerReplacing as exc:
            outcomes["error"] = exc
        outcomes["waited"] = time.monotonic() - started

    first = threading.Thread(target=stuck_call)
    first.start()
    time.sleep(0.5)
    second = threading.Thread(target=queued_call)
    second.start()
    first.join(5)
    second.join(5)
    stuck.set()
    assert isinstance(outcomes["error"], WorkerReplacing)
    assert outcomes["waited"] < 0.9  # refused when the stuck call timed out (about 0.5 s), not after 1 s


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


def _meet(partners: threading.Barrier) -> str:
    """A model call that returns only once ``partners`` calls are running at the same time."""
    partners.wait()
    return threading.current_thread().name


def test_a_model_that_takes_concurrent_calls_runs_them_on_as_many_model_threads():
    executor = ModelExecutor(max_batch_size=8, max_delay_s=0.01, timeout_s=30, lanes=lambda: 2)
    partners = threading.Barrier(2, timeout=5)
    with ThreadPoolExecutor(2) as pool:
        names = list(pool.map(lambda _: executor.run(lambda: _meet(partners)), range(2)))
    assert sorted(names) == ["model-executor", "model-executor-1"]


def test_two_lanes_run_two_batches_at_once_and_each_request_gets_its_own_answer():
    executor = ModelExecutor(max_batch_size=1, max_delay_s=0.01, timeout_s=30, lanes=lambda: 2)
    partners = threading.Barrier(2, timeout=5)

    def run_batch(items: list[str]) -> list[str]:
        return [f"{item} with {_meet(partners)}" for item in items]

    def one(item: str) -> str:
        with executor.arriving() as submit:
            return submit(item, run_batch)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(one, ["a", "b"]))
    assert sorted(answer.split(" with ")[0] for answer in answers) == ["a", "b"]
    assert {answer.split(" with ")[1] for answer in answers} == {"model-executor", "model-executor-1"}


def test_one_lane_never_runs_two_calls_at_once():
    executor = ModelExecutor(max_batch_size=8, max_delay_s=0.01, timeout_s=30)
    partners = threading.Barrier(2, timeout=0.5)  # the first call gives up waiting; the second finds it broken
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(lambda _: _outcome(lambda: executor.run(lambda: _meet(partners))), range(2)))
    assert all(isinstance(outcome, threading.BrokenBarrierError) for outcome in outcomes)


def _outcome(call: Any) -> Any:
    try:
        return call()
    except threading.BrokenBarrierError as exc:
        return exc


def test_a_stuck_call_in_one_lane_still_retires_the_worker_and_refuses_new_calls():
    stuck = threading.Event()
    retire_requests = []
    executor = ModelExecutor(max_batch_size=1, max_delay_s=0, timeout_s=0.5, lanes=lambda: 2,
                             on_stuck=lambda: retire_requests.append("retire"))
    with pytest.raises(ModelTimedOut):
        executor.run(lambda: stuck.wait(30))
    with pytest.raises(WorkerReplacing):
        executor.run(lambda: "behind a stuck call")
    assert retire_requests == ["retire"]
    stuck.set()
