"""The threads of a worker process that run the model, batching concurrent requests when they can.

Request threads decode, validate and tokenize on their own; only the model call comes here. A handler
that declares ``predict_batch_fn`` gets the requests that arrived together as one list: the executor
waits for more only while other requests are known to be on their way (they entered /invocations and
are still being decoded), for at most the batch delay, so a lone request never waits. A batch always
holds the oldest queued request; when the handler's prepared items declare a ``batch_length`` (the
built-in embedding handler's do), the rest of the batch is the queued requests of like length, so a
forward pass pads little and the others wait for a batch of their own kind (see ``alike``). Handlers
without predict_batch_fn run one request at a time, exactly as before.

There is one model thread unless the handler says its model takes concurrent calls (``model_lanes_fn``,
a localmaker hook like predict_batch_fn). The built-in embedding handler does on a CPU: there each thread
runs its batches on one core, so the cores work on different batches. With torch's threads all on one
batch, every parallel op waits for its slowest thread, and any request-thread work that takes a core
stalls the other core as well.

A failure of a whole batch is retried request by request, so one bad request fails alone. A request that
outlives the model-server timeout is answered with a timeout; if the model call itself is stuck, the
worker asks to be replaced (``on_stuck``), since a thread cannot be stopped from outside. A stuck call
costs only its own request: for as long as it runs past the timeout, the requests queued behind it and
every new one are refused at once (503 WorkerReplacing, with Retry-After), instead of each waiting the
whole timeout for a model thread that will not come back.

A call that answers with a ChunkStream (a handler that streams, see ``chunk_streams``), or a batch whose
answer for a request is an iterator, keeps the model thread for as long as the iterator runs: it is
advanced here, one model call at a time as for any other request, and its items reach the request thread
through a bounded relay. The timeout then bounds the gap between two items, not the whole stream, and so
does the stuck check.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from localmaker.local_endpoint.chunk_streams import ChunkStream, Relay, RelayedItems, is_chunk_iterator
from localmaker.local_endpoint.errors import WorkerReplacing

logger = logging.getLogger(__name__)

RunBatch = Callable[[list[Any]], list[Any]]


class ModelTimedOut(Exception):
    """The model did not answer within the model-server timeout: a 504, as a gateway would answer."""

    status_code = 504


@dataclass
class _Job:
    future: Future[Any] = field(default_factory=Future)


@dataclass
class _Solo(_Job):
    call: Callable[[], Any] = lambda: None


@dataclass
class _Batchable(_Job):
    item: Any = None
    run_batch: RunBatch = lambda items: items


class ModelExecutor:
    def __init__(self, max_batch_size: int, max_delay_s: float, timeout_s: float,
                 on_stuck: Callable[[], None] | None = None, lanes: Callable[[], int] = lambda: 1) -> None:
        self.max_batch_size = max(1, max_batch_size)
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._on_stuck = on_stuck
        # How many model threads run calls at once: asked when the first call comes, once the model is
        # loaded, since only the handler knows whether its model takes concurrent calls (see ``lanes``).
        self._lanes = lanes
        self._queue: collections.deque[_Job] = collections.deque()
        self._ready = threading.Condition()
        self._announced = 0  # requests between arrive() and submit(): the ones a batch may wait for
        self._threads: list[threading.Thread] = []
        self._lane_batch_size = self.max_batch_size  # a lane's share of the batch size, once lanes are known
        self._busy_since: dict[int, float] = {}  # model thread ident -> when its running call started
        self._overdue = False  # a call now running is past its timeout: nothing queued will run soon
        self._stuck_reported = False

    # -- request threads -----------------------------------------------------------------------

    def run(self, call: Callable[[], Any]) -> Any:
        """Run ``call`` on the model thread, alone, and return its result (or raise its exception)."""
        return self._wait(self._enqueue(_Solo(call=call)))

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Callable[[Any, RunBatch], Any]]:
        """Announce a request that will be batched, while it is being decoded; yields its ``submit``.

        A batch already forming waits for announced requests (up to the delay), never for strangers.
        """
        with self._ready:
            self._announced += 1
        submitted = False

        def submit(item: Any, run_batch: RunBatch) -> Any:
            nonlocal submitted
            submitted = True
            return self._wait(self._enqueue(_Batchable(item=item, run_batch=run_batch), announced=True))

        try:
            yield submit
        finally:
            if not submitted:  # it failed before reaching the model: nobody should wait for it
                with self._ready:
                    self._announced -= 1
                    self._ready.notify_all()

    def _enqueue(self, job: _Job, announced: bool = False) -> _Job:
        with self._ready:
            if announced:  # in the same step as the append, so a forming batch never sees it in neither place
                self._announced -= 1
            if self._overdue or self._busy_for() >= self.timeout_s:
                raise self._refusal()
            if not self._threads:
                # Started on first use, in the worker process: a thread started before gunicorn forks
                # would not exist in the workers.
                count = max(1, int(self._lanes()))
                # Lanes split the batch size between them, so a burst runs on all of them at once, and
                # no lane takes a batch that keeps its requests waiting while another lane is idle.
                self._lane_batch_size = max(1, -(-self.max_batch_size // count))
                names = ["model-executor", *(f"model-executor-{lane}" for lane in range(1, count))]
                self._threads = [threading.Thread(target=self._loop, name=name, daemon=True) for name in names]
                for thread in self._threads:
                    thread.start()
            self._queue.append(job)
            self._ready.notify_all()
        return job

    def _wait(self, job: _Job) -> Any:
        try:
            return job.future.result(timeout=self.timeout_s)
        except FutureTimeout:
            # Still queued: cancelled, so it will not run for nobody. Already running: this very call is
            # past its timeout, which is what being stuck means (the model thread's clock started a moment
            # after this one, so its own measure would fall just short).
            running = not job.future.cancel() and not job.future.done()
            self._check_stuck(overdue=running)
            raise ModelTimedOut(
                f"the model did not answer within SAGEMAKER_MODEL_SERVER_TIMEOUT={self.timeout_s:g}s; "
                "send a smaller request, or raise the timeout for this model"
            ) from None

    def _busy_for(self) -> float:
        """How long the oldest running call has run (0 when none runs)."""
        started = list(self._busy_since.values())
        return time.monotonic() - min(started) if started else 0.0

    def _refusal(self) -> WorkerReplacing:
        return WorkerReplacing(
            f"the model has been stuck in an earlier call for {self._busy_for():.0f}s, past "
            f"SAGEMAKER_MODEL_SERVER_TIMEOUT={self.timeout_s:g}s, and this worker is being replaced; "
            "retry after the Retry-After seconds"
        )

    def _check_stuck(self, overdue: bool = False) -> None:
        with self._ready:
            if not self._busy_since or not (overdue or self._busy_for() >= self.timeout_s):
                return
            self._overdue = True
            # The requests queued behind the stuck call are answered now, not each at its own timeout.
            refusal = self._refusal()
            while self._queue:
                queued = self._queue.popleft()
                if queued.future.set_running_or_notify_cancel():
                    queued.future.set_exception(refusal)
            if self._stuck_reported:
                return
            self._stuck_reported = True
        logger.error("the model call has run for %.0fs, past the %gs timeout; this worker will be replaced",
                     self._busy_for(), self.timeout_s)
        if self._on_stuck is not None:
            self._on_stuck()

    # -- the model thread ------------------------------------------------------------------------

    def _loop(self) -> None:
        lane = threading.get_ident()
        while True:
            jobs = self._next_jobs()
            with self._ready:
                self._busy_since[lane] = time.monotonic()
            try:
                if isinstance(jobs[0], _Solo):
                    self._run_solo(jobs[0])
                else:
                    self._run_batch([job for job in jobs if isinstance(job, _Batchable)])
            finally:
                with self._ready:
                    del self._busy_since[lane]
                    if self._busy_for() < self.timeout_s:
                        self._overdue = False  # the stuck call ended after all: requests may queue again

    def _run_solo(self, job: _Solo) -> None:
        try:
            result = job.call()
        except BaseException as exc:  # noqa: BLE001 - the request's own thread raises it
            job.future.set_exception(exc)
            return
        if not isinstance(result, ChunkStream):
            job.future.set_result(result)
            return
        relay = Relay(stall_timeout_s=self.timeout_s)
        job.future.set_result(ChunkStream(self._relayed(relay), result.content_type))
        relay.pump(result.chunks, on_item=self._heartbeat)

    def _heartbeat(self) -> None:
        """A streaming call made progress: the stuck check measures from its latest chunk."""
        with self._ready:
            self._busy_since[threading.get_ident()] = time.monotonic()

    def _relayed(self, relay: Relay) -> RelayedItems:
        """The request thread's side of a stream: each item as the model thread hands it on."""
        return RelayedItems(relay, self.timeout_s, self._stream_went_silent)

    def _stream_went_silent(self) -> None:
        self._check_stuck(overdue=True)
        raise ModelTimedOut(
            f"the model's stream sent nothing for SAGEMAKER_MODEL_SERVER_TIMEOUT={self.timeout_s:g}s; "
            "yield chunks more often, or raise the timeout for this model"
        ) from None

    def _next_jobs(self) -> list[_Job]:
        with self._ready:
            first = self._take()
            if isinstance(first, _Solo):
                return [first]
            deadline = time.monotonic() + self.max_delay_s
            while True:
                pool = self._queued_batchables()
                remaining = deadline - time.monotonic()
                if (len(pool) + 1 >= self._lane_batch_size or self._announced == 0 or remaining <= 0
                        or any(isinstance(job, _Solo) for job in self._queue)):  # don't delay a solo call
                    break
                self._ready.wait(remaining)
            assert isinstance(first, _Batchable)
            chosen = alike(first, pool, self._lane_batch_size - 1)
            taken = {id(job) for job in chosen}
            self._queue = collections.deque(job for job in self._queue if id(job) not in taken)
            return [first, *(job for job in chosen if job.future.set_running_or_notify_cancel())]

    def _queued_batchables(self) -> list[_Batchable]:
        """The batchable jobs at the head of the queue, oldest first, up to the first solo call."""
        pool: list[_Batchable] = []
        for job in self._queue:
            if not isinstance(job, _Batchable) or len(pool) >= POOL_LIMIT:
                break
            if not job.future.cancelled():
                pool.append(job)
        return pool

    def _take(self) -> _Job:
        """The first queued job that was not cancelled (its caller gave up), marked running."""
        while True:
            while not self._queue:
                self._ready.wait()
            job = self._queue.popleft()
            if job.future.set_running_or_notify_cancel():
                return job

    def _run_batch(self, jobs: list[_Batchable]) -> None:
        run_batch = jobs[0].run_batch
        if len(jobs) > 1:
            logger.info("running a batch of %d requests", len(jobs))
        try:
            results = run_batch([job.item for job in jobs])
            if len(results) != len(jobs):
                raise RuntimeError(f"predict_batch_fn returned {len(results)} results for {len(jobs)} requests")
        except BaseException as exc:  # noqa: BLE001 - retried one by one, so only the culprit fails; a
            # SystemExit from user code must fail its requests, not end the model thread
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            logger.warning("a batch of %d failed (%s); running its requests one by one", len(jobs), exc)
            results = []
            for job in jobs:
                try:
                    results.append(_run_alone(run_batch, job.item))
                except BaseException as alone:  # noqa: BLE001 - this request's own failure, as its answer
                    results.append(alone)
        streams = []
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                job.future.set_exception(result)
            elif is_chunk_iterator(result):  # a streamed answer: its items are produced here, on this thread
                relay = Relay(stall_timeout_s=self.timeout_s)
                job.future.set_result(self._relayed(relay))
                streams.append((relay, result))
            else:
                job.future.set_result(result)
        for relay, items in streams:  # one after the other: one model call at a time, streams included
            relay.pump(items, on_item=self._heartbeat)


# A request this much shorter than a batch's longest pads to that length: a quarter or more of its
# forward pass would be spent on padding, so it waits for the next batch instead.
ALIKE_FILL = 0.7
POOL_LIMIT = 256  # queued requests looked at when a batch is formed; keeps the choice O(n^2) and cheap


def alike(first: _Batchable, pool: list[_Batchable], room: int) -> list[_Batchable]:
    """The jobs of ``pool`` to run with ``first`` (the oldest, which always runs), at most ``room``.

    Items that declare a ``batch_length`` (the built-in embedding handler's prepared requests do: their
    longest text in tokens) are batched with those of like length, in arrival order among them, so a
    batch carries little padding; the others wait for a batch of their own kind, formed from a queue
    that keeps filling meanwhile. ``first`` being the oldest, every request runs within a few batches.
    Items without a length are batched in arrival order, as they come.
    """
    lengths = [_batch_length(job) for job in pool]
    own = _batch_length(first)
    if own is None or any(length is None for length in lengths):
        return pool[:room]
    best: list[_Batchable] = []
    for top in sorted({length for length in lengths if length is not None and length >= own} | {own}):
        if own < ALIKE_FILL * top:
            break
        members = [job for job, length in zip(pool, lengths, strict=True)
                   if length is not None and ALIKE_FILL * top <= length <= top]
        if len(members) > len(best):
            best = members
    return best[:room]


def _batch_length(job: _Batchable) -> int | None:
    length = getattr(job.item, "batch_length", None)
    return length if isinstance(length, int) else None


def _run_alone(run_batch: RunBatch, item: Any) -> Any:
    results = run_batch([item])
    if len(results) != 1:
        raise RuntimeError(f"predict_batch_fn returned {len(results)} results for 1 request")
    if isinstance(results[0], BaseException):
        raise results[0]
    return results[0]
