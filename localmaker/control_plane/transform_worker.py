"""One transform instance at work: its input files, in order, as requests to its /invocations.

Each instance takes its share of the job's files one after another; within a file, up to
``MaxConcurrentTransforms`` requests are in flight at once, and their answers are written in the
order of the records. ``ModelClientConfig`` holds for every request: ``InvocationsTimeoutInSeconds``,
and ``InvocationsMaxRetries`` for a 5xx answer or a dropped connection (a 4xx answer is the record's
fault, and retrying it cannot help). A record that still fails ends the job, naming the file and record.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from localmaker.control_plane.instance_process import InstanceProcess
from localmaker.control_plane.transform_data_processing import RecordProcessingError
from localmaker.control_plane.transform_inputs import InputFile
from localmaker.control_plane.transform_records import (
    Batch,
    RecordTooLarge,
    assemble,
    batches,
    decompress,
    split_records,
)
from localmaker.control_plane.transform_state import TransformSpec

logger = logging.getLogger(__name__)

# How long a refused or broken connection waits for the instance to show that it exited, before a retry.
EXIT_GRACE_S = 1.0

MAX_REASON_MESSAGE = 400  # of the container's own message, within FailureReason's 1024 characters


class JobFailure(Exception):
    """What ends a job as Failed; the message is its FailureReason."""


class Stopped(Exception):
    """The job was stopped (or another instance failed it) while this request waited to be sent."""


class TransformWorker:
    """Sends one instance's files through it; ``on_records`` counts what is done, for progress.

    ``cancelled`` is the job's: set by a stop, or here by a failure, it keeps requests not yet sent
    from being sent, on every instance of the job.
    """

    def __init__(self, spec: TransformSpec, process: InstanceProcess, cancelled: threading.Event,
                 on_records: Callable[[int], None]) -> None:
        self._spec = spec
        self._process = process
        self._cancelled = cancelled
        self._on_records = on_records

    def transform(self, item: InputFile, local: Path) -> bytes:
        """The ``.out`` content for one downloaded input file."""
        spec = self._spec
        records = split_records(decompress(local.read_bytes(), spec.compression), spec.split_type)
        try:
            planned = list(batches(records, spec.batch_strategy, spec.split_type, spec.max_payload_mb))
        except RecordTooLarge as exc:
            raise JobFailure(f"ClientError: {exc} (in {item.url})") from None
        pool = ThreadPoolExecutor(max_workers=spec.max_concurrent,
                                  thread_name_prefix=f"transform-{self._process.instance_id}")
        try:
            answers = list(pool.map(lambda batch: self._answer(item, batch), planned))
        except BaseException:
            self._cancelled.set()  # the job ends: requests not yet sent, here and on other instances, are not
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return assemble([part for answer in answers for part in answer], spec.assemble_with)

    def _answer(self, item: InputFile, batch: Batch) -> list[bytes]:
        """What the batch writes: its answer whole, or one line per record when DataProcessing applies."""
        processing = self._spec.data_processing
        body = batch.body
        if processing is not None:
            try:
                filtered = [processing.filter_input(record) for record in batch.records]
            except (RecordProcessingError, UnicodeDecodeError) as exc:
                raise JobFailure(f"ClientError: InputFilter failed on {_records(batch)} of {item.url}: {exc}") from None
            body = (b"\n" if self._spec.split_type == "Line" else b"").join(filtered)
        answer = self._invoke(item, batch, body)
        self._on_records(batch.count)
        if processing is None:
            return [answer]
        parts = [answer] if batch.count == 1 else [line for line in answer.split(b"\n") if line.strip()]
        if len(parts) != batch.count:
            raise JobFailure(f"ClientError: the model answered {len(parts)} lines for the {batch.count} "
                             f"{_records(batch)} of {item.url}; JoinSource and OutputFilter need one answer line "
                             "per record (or BatchStrategy SingleRecord)")
        try:
            return [processing.finish(record, part) for record, part in zip(batch.records, parts, strict=True)]
        except (RecordProcessingError, UnicodeDecodeError) as exc:
            raise JobFailure(f"ClientError: OutputFilter failed on {_records(batch)} of {item.url}: {exc}") from None

    def _invoke(self, item: InputFile, batch: Batch, body: bytes) -> bytes:
        spec = self._spec
        headers = {"Content-Type": spec.content_type or "application/octet-stream"}
        if spec.accept:
            headers["Accept"] = spec.accept
        attempts = spec.max_retries + 1
        for attempt in range(1, attempts + 1):
            if self._cancelled.is_set():
                raise Stopped()
            request = urllib.request.Request(f"{self._process.url}/invocations", data=body, headers=headers,
                                             method="POST")
            try:
                with urllib.request.urlopen(request, timeout=spec.invocation_timeout_s) as response:
                    return bytes(response.read())
            except urllib.error.HTTPError as exc:
                message = exc.read().decode("utf-8", "replace")[:MAX_REASON_MESSAGE]
                if exc.code < 500 or attempt == attempts:
                    kind = "ClientError" if exc.code < 500 else "AlgorithmError"
                    raise JobFailure(f"{kind}: the model answered {exc.code} for {_records(batch)} of {item.url}"
                                     f": {message}") from None
            except (urllib.error.URLError, OSError) as exc:
                if self._cancelled.is_set():
                    raise Stopped() from None
                code = self._exit_within(EXIT_GRACE_S)
                if self._cancelled.is_set():
                    raise Stopped() from None
                if code is not None:
                    raise JobFailure(f"InternalServerError: instance {self._process.instance_id} exited (code "
                                     f"{code}) while transforming {_records(batch)} of {item.url}; the job "
                                     "cannot finish without it") from None
                if attempt == attempts:
                    raise JobFailure(f"AlgorithmError: {_records(batch)} of {item.url} got no answer after "
                                     f"{attempts} attempt(s) (InvocationsTimeoutInSeconds "
                                     f"{spec.invocation_timeout_s}): {exc}") from None
            logger.info("transform %s: retrying %s of %s (attempt %d of %d)", spec.name, _records(batch),
                        item.url, attempt + 1, attempts)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _exit_within(self, seconds: float) -> int | None:
        """The instance's exit code if it shows one within ``seconds`` (or the job is stopped first), else None.

        A killed instance refuses connections a moment before its master can be reaped: asking at once, a
        busy machine spent every retry in that moment and reported a timeout instead of the exit."""
        deadline = time.monotonic() + seconds
        while (code := self._process.exited()) is None and time.monotonic() < deadline:
            if self._cancelled.wait(0.05):
                return None
        return code


def _records(batch: Batch) -> str:
    """1-based, as a person counts lines: "record 3" or "records 3-7"."""
    if batch.count == 1:
        return f"record {batch.first + 1}"
    return f"records {batch.first + 1}-{batch.first + batch.count}"

