"""Embedding throughput: 32 concurrent clients, one text per request, through a real gunicorn endpoint.

Compared, side by side in one run, over the same seeded texts:
  - in-process batched encode with sentence-transformers (``encode(texts, batch_size=32)``), what a user
    would otherwise run; it sorts all the texts by length first, which a server cannot do with requests
    that have not arrived yet, so two more in-process rows show where the endpoint stands: batches of 32
    in arrival order (the padding a server's batches carry), and one text at a time;
  - the endpoint as deployed by default (dynamic batching on: SAGEMAKER_TS_BATCH_SIZE 32, 10 ms delay);
  - the same endpoint with batching off (SAGEMAKER_TS_BATCH_SIZE=1): one forward pass per request.
The paths take turns in each repeat, so drift on a shared machine hits them alike; medians are reported.
Requests go straight to the instance URL (no control-plane hop), one pooled connection per client
thread. Every vector the endpoints return is checked against the in-process ones, so a run cannot look
fast by doing less work.

    python -m benchmarks.embedding_throughput [--texts 512] [--clients 32] [--repeats 5] [--model minilm]
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.http_clients import EndpointClients
from benchmarks.reporting import ROLE, load_line, machine_line, markdown_table

# Common English words: texts that tokenize like real sentences (mostly whole-word tokens).
_WORD_LIST = """
the of and to in is that for it as was with be by on not he this are or his from at which but have an they
you were her she there been one all we their has would when if so no will more can who said out up about
into them some could time than its two first then do any like my now over such our man me even most made
after also did many before must through back years where much your way well down should because each just
those people how too little state good very make world still own see men work long get here between both
life being under never day same another know while last might us great old year off come since against
go came right used take three small large water city music players team league season goals football
model search query document answer question system data network server request endpoint language
learning training deploy cloud region price market company report policy health school family history
river mountain village summer winter morning evening light colour sound voice story film book paper
"""
WORDS = tuple(_WORD_LIST.split())
MIN_WORDS, MAX_WORDS = 4, 60
BATCH_LINE = re.compile(r"running a batch of (\d+) requests")
ALLCLOSE_ATOL = 1e-4
BATCHING_OFF = {"SAGEMAKER_TS_BATCH_SIZE": "1"}


def make_texts(count: int, seed: int = 0) -> list[str]:
    """``count`` sentences of 4 to 60 words, the same for a given seed."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(MIN_WORDS, MAX_WORDS))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


@dataclass
class PathResult:
    """One way of embedding the texts: its label, wall times per repeat, and what it did."""

    label: str
    seconds: list[float] = field(default_factory=list)
    model_calls: list[int] = field(default_factory=list)
    max_abs_diff: float = 0.0

    def texts_per_s(self, texts: int) -> float:
        return texts / statistics.median(self.seconds)

    def texts_per_call(self, texts: int) -> float:
        return texts / statistics.median(self.model_calls)

    def record(self, seconds: float, vectors: np.ndarray, reference: np.ndarray, model_calls: int) -> None:
        """Keep one run's figures, and stop the benchmark if its vectors are not the reference's."""
        if vectors.shape != reference.shape or not np.allclose(vectors, reference, atol=ALLCLOSE_ATOL):
            worst = float(np.max(np.abs(vectors - reference))) if vectors.shape == reference.shape else float("inf")
            raise RuntimeError(f"{self.label}: embeddings differ from the in-process ones "
                               f"(shape {vectors.shape} vs {reference.shape}, max |diff| {worst:.2e})")
        self.seconds.append(seconds)
        self.model_calls.append(model_calls)
        self.max_abs_diff = max(self.max_abs_diff, float(np.max(np.abs(vectors - reference))))


class InProcess:
    """sentence-transformers in this process, the way a user would embed a list of texts without a server."""

    def __init__(self, model_dir: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu")

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """One call: sentence-transformers sorts all the texts by length, so each batch has little padding."""
        vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def encode_in_arrival_order(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """``batch_size`` texts per call, as they come: the padding a server's batches carry, without a server."""
        return np.concatenate([self.encode(texts[i:i + batch_size], batch_size)
                               for i in range(0, len(texts), batch_size)])


@dataclass
class InProcessPath:
    result: PathResult
    encode: Callable[[Sequence[str]], np.ndarray]
    texts_per_call: int

    def run(self, texts: Sequence[str], reference: np.ndarray) -> None:
        began = time.perf_counter()
        vectors = self.encode(texts)
        self.result.record(time.perf_counter() - began, vectors, reference,
                           model_calls=math.ceil(len(texts) / self.texts_per_call))


@dataclass
class DeployedEndpoint:
    url: str
    log_file: Path

    def log_size(self) -> int:
        return self.log_file.stat().st_size if self.log_file.exists() else 0

    def model_calls_since(self, offset: int, requests: int) -> int:
        """Forward passes for ``requests`` requests, from the executor's "running a batch of N" lines.

        Only batches of two or more are logged: every request not in one ran alone.
        """
        with self.log_file.open("rb") as log:
            log.seek(offset)
            batched = [int(n) for n in BATCH_LINE.findall(log.read().decode("utf-8", "replace"))]
        return len(batched) + requests - sum(batched)


def deploy(session: Any, model: str, env: dict[str, str]) -> DeployedEndpoint:
    from localmaker.deploy import Model

    name = f"throughput-{uuid.uuid4().hex[:6]}"
    Model(model_data=model, role=ROLE, env=env, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    instance = session.local_endpoint(name).instances[0]
    return DeployedEndpoint(url=instance.url, log_file=instance.log_file)


@dataclass
class EndpointPath:
    """An endpoint, its clients, and what its runs measured."""

    result: PathResult
    endpoint: DeployedEndpoint
    clients: EndpointClients

    def run(self, texts: Sequence[str], reference: np.ndarray) -> None:
        offset = self.endpoint.log_size()
        seconds, vectors = self.clients.embed_all(texts)
        self.result.record(seconds, vectors, reference, self.endpoint.model_calls_since(offset, len(texts)))


def measure(args: argparse.Namespace) -> tuple[list[PathResult], int]:
    """Run every path ``args.repeats`` times, taking turns; returns the results and the number of texts."""
    from localmaker.deploy import Session
    from localmaker.model.sources import resolve_source

    texts = make_texts(args.texts, args.seed)
    model = InProcess(resolve_source(args.model))
    model.encode(texts[: args.batch_size], args.batch_size)  # warm-up: first-call allocations, kernel selection
    reference = model.encode(texts, args.batch_size)
    size = args.batch_size
    turns: list[InProcessPath | EndpointPath] = [
        InProcessPath(PathResult(f"in-process sentence-transformers, encode(texts, batch_size={size})"),
                      functools.partial(model.encode, batch_size=size), size),
        InProcessPath(PathResult(f"in-process, {size} texts per encode() in arrival order"),
                      functools.partial(model.encode_in_arrival_order, batch_size=size), size),
        InProcessPath(PathResult("in-process, one text per encode()"),
                      functools.partial(model.encode_in_arrival_order, batch_size=1), 1),
    ]
    with tempfile.TemporaryDirectory(prefix="localmaker-throughput-") as folder, \
            Session(work_root=Path(folder) / "control-plane") as session:
        clients: list[EndpointClients] = []
        try:
            for label, env in [("endpoint, batching on (default: batch 32, 10 ms delay)", {}),
                               ("endpoint, batching off (SAGEMAKER_TS_BATCH_SIZE=1)", BATCHING_OFF)]:
                endpoint = deploy(session, args.model, env)
                clients.append(EndpointClients(endpoint.url, args.clients))
                clients[-1].embed_all(texts[: args.clients])  # warm-up: open every connection, first passes
                turns.append(EndpointPath(PathResult(label), endpoint, clients[-1]))
            for repeat in range(args.repeats):
                shift = repeat % len(turns)  # rotate who goes first, so no path always follows the same one
                for path in turns[shift:] + turns[:shift]:
                    path.run(texts, reference)
        finally:
            for client in clients:
                client.close()
    return [path.result for path in turns], len(texts)


def report(results: list[PathResult], texts: int, args: argparse.Namespace) -> str:
    rows = [[r.label, f"{r.texts_per_s(texts):.1f}", f"{statistics.median(r.seconds):.2f}",
             f"{r.texts_per_call(texts):.1f}", f"{r.max_abs_diff:.1e}"] for r in results]
    table = markdown_table(["path", "texts/s", "median s", "texts per forward pass", "max abs diff"], rows)
    batched, _, one_by_one, on, off = (r.texts_per_s(texts) for r in results)
    return "\n".join([
        f"\n{texts} texts ({MIN_WORDS}-{MAX_WORDS} words, seed {args.seed}), {args.clients} concurrent clients, "
        f"one text per request, model {args.model!r}, median of {args.repeats} (paths take turns):\n",
        table,
        "",
        f"embeddings equal the in-process ones (allclose atol={ALLCLOSE_ATOL:g}): yes, in every run of every path",
        f"in-process batched / in-process one at a time = {batched / one_by_one:.2f}× (what batching can give here)",
        f"endpoint / batching off = {on / off:.2f}× (target ≥ 5×)",
        f"endpoint / in-process batched = {on / batched:.2f}× (target ≥ 0.8×)",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads, one request each at a time")
    parser.add_argument("--repeats", type=int, default=5, help="turns of each path; medians are reported")
    parser.add_argument("--batch-size", type=int, default=32, help="in-process encode batch size")
    parser.add_argument("--model", default="minilm", help="a named source or a model directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    print(machine_line())
    results, texts = measure(args)
    print(f"after the run: {load_line()}")
    print(report(results, texts, args))


if __name__ == "__main__":
    main()
