"""Batches of like length: the model thread runs queued requests of similar length together, oldest first,
so a forward pass carries little padding, and no request waits more than a few batches."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from localmaker.local_endpoint.model_executor import ALIKE_FILL, ModelExecutor, _Batchable, alike


@dataclass(frozen=True)
class Sized:
    name: str
    batch_length: int


def _job(item: Any) -> _Batchable:
    return _Batchable(future=Future(), item=item)


def _names(jobs: list[_Batchable]) -> list[str]:
    return [job.item.name for job in jobs]


def test_the_oldest_runs_with_the_queued_requests_of_its_own_length_in_arrival_order():
    first = _job(Sized("first", 10))
    pool = [_job(Sized(name, length)) for name, length in
            [("a", 50), ("b", 9), ("c", 48), ("d", 8), ("e", 12), ("f", 45), ("g", 10)]]
    chosen = alike(first, pool, room=31)
    assert _names(chosen) == ["b", "d", "g"]  # 8..10 tokens: within ALIKE_FILL of 10; 12 would pad 8 to 12
    assert all(ALIKE_FILL * 10 <= job.item.batch_length <= 10 for job in chosen)


def test_a_short_oldest_request_is_not_passed_over_for_a_larger_group_of_long_ones():
    first = _job(Sized("short", 5))
    pool = [_job(Sized(f"long{i}", 60)) for i in range(20)]
    assert alike(first, pool, room=31) == []  # it runs now, alone; the long ones form the next batch


def test_the_group_is_capped_at_the_room_left_in_the_batch_taking_the_oldest():
    first = _job(Sized("first", 20))
    pool = [_job(Sized(f"r{i}", 20)) for i in range(10)]
    assert _names(alike(first, pool, room=3)) == ["r0", "r1", "r2"]


def test_items_without_a_length_are_batched_in_arrival_order_as_before():
    first = _job("first")
    pool = [_job(name) for name in ["a", "b", "c"]]
    assert [job.item for job in alike(first, pool, room=2)] == ["a", "b"]
    mixed = [_job(Sized("sized", 50)), _job("plain")]  # one without a length: no reordering at all
    assert alike(_job(Sized("first", 5)), mixed, room=8) == mixed


def test_requests_of_two_lengths_that_arrive_together_run_as_two_batches_of_their_own_length():
    executor = ModelExecutor(max_batch_size=16, max_delay_s=10.0, timeout_s=30)
    batches: list[list[int]] = []
    items = [Sized(f"{kind}{i}", length) for i in range(4) for kind, length in (("long", 100), ("short", 10))]
    all_announced = threading.Barrier(len(items))

    def run_batch(batch: list[Sized]) -> list[str]:
        batches.append([item.batch_length for item in batch])
        return [f"done {item.name}" for item in batch]

    def one(item: Sized) -> Any:
        with executor.arriving() as submit:
            all_announced.wait(timeout=10)
            return submit(item, run_batch)

    with ThreadPoolExecutor(len(items)) as pool:
        answers = list(pool.map(one, items))
    assert answers == [f"done {item.name}" for item in items]  # each its own answer, none lost
    assert sorted(length for batch in batches for length in batch) == sorted(i.batch_length for i in items)
    # In arrival order, one batch would mix them and pad every short text to 100 tokens.
    assert all(min(batch) >= ALIKE_FILL * max(batch) for batch in batches), batches
