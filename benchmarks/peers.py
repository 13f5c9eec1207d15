"""localmaker against the peer embedding servers, side by side in one run, on the same weights and client.

The servers: localmaker's endpoint (a real gunicorn instance, default batching), the same endpoint with its
opt-in ONNX Runtime forward pass (LOCALMAKER_EMBEDDING_BACKEND=onnxruntime), infinity-emb 0.0.78
(torch engine, its default batching) and litserve 0.2.19 (max_batch_size 32, batch_timeout 10 ms, a LitAPI
that encodes with sentence-transformers); beside them, in-process sentence-transformers with
``encode(texts, batch_size=32)``, what a user would run without a server. Every server gets the same texts
from embedding_throughput (4-60 words, seeded), one text per request, from ``--clients`` threads on kept-alive
connections, and every vector it returns is checked against the in-process one (cosine >= 0.9999), so no
server can look fast by doing less. Each peer runs from its own venv under the cache folder
(benchmarks/peer_envs.py, built on first use) as a real server on 127.0.0.1; all are stopped and reaped at
the end. Each round runs every server once, in an order that rotates from round to round, so drift on a
shared machine hits them alike; medians are reported.

    python -m benchmarks.peers [--texts 512] [--clients 32] [--rounds 2] [--only localmaker infinity ...]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.embedding_throughput import MAX_WORDS, MIN_WORDS, InProcess, deploy, make_texts
from benchmarks.http_clients import LOCALMAKER_API, EndpointClients, HttpApi
from benchmarks.peer_envs import INFINITY, PeerEnv, ensure, litserve_env, project_version
from benchmarks.peer_servers import (
    INFINITY_API,
    LITSERVE_API,
    ServerProcess,
    start_infinity,
    start_litserve,
)
from benchmarks.reporting import load_line, machine_line, markdown_table, percentile

SERVERS = ("infinity", "litserve", "localmaker", "localmaker-onnx", "inprocess")
# The endpoint with its opt-in ONNX Runtime forward pass (inference/onnx_encoder.py).
ONNX_ENV = {"LOCALMAKER_EMBEDDING_BACKEND": "onnxruntime"}
PEERS = ("infinity", "litserve")
MIN_COSINE = 0.9999


@dataclass
class Row:
    """One server's runs: wall seconds per run, every request's latency, and the worst cosine seen."""

    label: str
    seconds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    min_cosine: float = 1.0

    def record(self, seconds: float, vectors: np.ndarray, reference: np.ndarray, latencies: Sequence[float]) -> None:
        """Keep one run's figures, and stop the benchmark if any vector is not the in-process one."""
        if vectors.shape != reference.shape:
            raise RuntimeError(f"{self.label}: got vectors of shape {vectors.shape}, expected {reference.shape}")
        with np.errstate(invalid="ignore", divide="ignore"):  # an all-zero vector gives NaN, rejected below
            cosines = np.sum(vectors * reference, axis=1) / (
                np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1))
        worst = float(np.min(cosines))
        if not worst >= MIN_COSINE:  # also catches NaN from an all-zero vector
            raise RuntimeError(f"{self.label}: text {int(np.argmin(cosines))} came back with cosine {worst:.6f} "
                               f"to the in-process vector (needs >= {MIN_COSINE})")
        self.seconds.append(seconds)
        self.latencies.extend(latencies)
        self.min_cosine = min(self.min_cosine, worst)

    def texts_per_s(self, texts: int) -> list[float]:
        return [texts / s for s in self.seconds]

    def median_texts_per_s(self, texts: int) -> float:
        return statistics.median(self.texts_per_s(texts))


@dataclass
class InProcessTurn:
    row: Row
    model: InProcess
    batch_size: int

    def run(self, texts: Sequence[str], reference: np.ndarray) -> None:
        began = time.perf_counter()
        vectors = self.model.encode(texts, self.batch_size)
        self.row.record(time.perf_counter() - began, vectors, reference, [])


@dataclass
class ServerTurn:
    row: Row
    clients: EndpointClients

    def run(self, texts: Sequence[str], reference: np.ndarray) -> None:
        seconds, vectors = self.clients.embed_all(texts)
        self.row.record(seconds, vectors, reference, self.clients.latencies)


def peer_envs() -> dict[str, PeerEnv]:
    return {"infinity": INFINITY, "litserve": litserve_env()}


def selected_peers(args: argparse.Namespace) -> dict[str, PeerEnv]:
    """The peers this run measures, each printed as skipped (and why) when it is not."""
    chosen = {}
    for key, env in peer_envs().items():
        if key not in args.only:
            print(f"skipped {env.name} {env.version}: not selected (--only {' '.join(args.only)})")
        elif not env.ready() and args.no_install:
            print(f"skipped {env.name} {env.version}: no environment at {env.folder} "
                  f"(run without --no-install to create it)")
        else:
            chosen[key] = env
    return chosen


def versions_line(peers: dict[str, PeerEnv]) -> str:
    parts = [f"localmaker (this tree) with sentence-transformers {project_version('sentence-transformers')}, "
             f"transformers {project_version('transformers')}"]
    for env in peers.values():
        pins = env.installed()
        parts.append(f"{env.name} {env.version} with sentence-transformers {pins.get('sentence-transformers', '?')}, "
                     f"transformers {pins.get('transformers', '?')}, torch {pins.get('torch', '?')}")
    return f"versions: torch {project_version('torch')} (CPU) everywhere; " + "; ".join(parts)


def measure(args: argparse.Namespace) -> tuple[dict[str, Row], dict[str, PeerEnv]]:
    """Start every selected server, then run ``args.rounds`` rounds in rotating order; rows in SERVERS order."""
    from localmaker.model.sources import resolve_source

    peers = selected_peers(args)
    for env in peers.values():
        ensure(env)
    texts = make_texts(args.texts, args.seed)
    model_dir = resolve_source(args.model)
    model = InProcess(model_dir)
    model.encode(texts[: args.batch_size], args.batch_size)  # warm-up: first-call allocations, kernel selection
    reference = model.encode(texts, args.batch_size)
    turns: dict[str, InProcessTurn | ServerTurn] = {}
    with tempfile.TemporaryDirectory(prefix="localmaker-peers-") as folder, contextlib.ExitStack() as stack:
        work = Path(folder)
        servers: dict[str, tuple[str, HttpApi]] = {}
        ours = {key: env for key, env in (("localmaker", {}), ("localmaker-onnx", ONNX_ENV)) if key in args.only}
        if ours:
            from localmaker.deploy import Session

            session = stack.enter_context(Session(work_root=work / "control-plane"))
            for key, env in ours.items():
                servers[key] = (deploy(session, args.model, env).url, LOCALMAKER_API)
        processes: dict[str, ServerProcess] = {}
        for key, env in peers.items():  # all start at once; each is stopped on the way out, whatever happens
            processes[key] = start_infinity(model_dir, work) if key == "infinity" else start_litserve(
                env, model_dir, work)
            stack.callback(processes[key].stop)
        for key, process in processes.items():
            process.wait_ready()
            servers[key] = (process.url, INFINITY_API if key == "infinity" else LITSERVE_API)
        envs = peer_envs()
        labels = {"localmaker": "localmaker endpoint (default batching)",
                  "localmaker-onnx": "localmaker endpoint, LOCALMAKER_EMBEDDING_BACKEND=onnxruntime (opt-in)",
                  "infinity": f"infinity-emb {envs['infinity'].version} (torch engine, default batching)",
                  "litserve": f"litserve {envs['litserve'].version} (max_batch_size 32, batch_timeout 10 ms)"}
        for key, (url, api) in servers.items():
            clients = EndpointClients(url, args.clients, api)
            stack.callback(clients.close)
            clients.embed_all(texts[: args.clients])  # warm-up: open every connection, first forward passes
            turns[key] = ServerTurn(Row(labels[key]), clients)
        if "inprocess" in args.only:
            turns["inprocess"] = InProcessTurn(
                Row(f"in-process sentence-transformers, encode(texts, batch_size={args.batch_size})"),
                model, args.batch_size)
        order = [key for key in SERVERS if key in turns]
        for index in range(args.rounds):
            shift = index % len(order)  # rotate who goes first, so no server always follows the same one
            for key in order[shift:] + order[:shift]:
                turns[key].run(texts, reference)
                print(f"  round {index + 1}: {turns[key].row.label}: "
                      f"{turns[key].row.texts_per_s(len(texts))[-1]:.1f} texts/s ({load_line()})", flush=True)
    return {key: turns[key].row for key in order}, peers


def report(rows: dict[str, Row], texts: int, args: argparse.Namespace) -> str:
    baseline = rows.get("localmaker")
    base = baseline.median_texts_per_s(texts) if baseline else float("nan")
    headers = ["server", *(f"texts/s, run {i + 1}" for i in range(args.rounds)), "median texts/s",
               "vs localmaker", "p50 ms", "p99 ms", "min cosine"]
    table = []
    for row in rows.values():
        served = bool(row.latencies)
        table.append([row.label, *(f"{rate:.1f}" for rate in row.texts_per_s(texts)),
                      f"{row.median_texts_per_s(texts):.1f}",
                      f"{row.median_texts_per_s(texts) / base:.2f}×" if baseline else "–",
                      f"{percentile(row.latencies, 0.50) * 1000:,.0f}" if served else "–",
                      f"{percentile(row.latencies, 0.99) * 1000:,.0f}" if served else "–",
                      f"{row.min_cosine:.6f}"])
    lines = [
        f"\n{texts} texts ({MIN_WORDS}-{MAX_WORDS} words, seed {args.seed}), {args.clients} concurrent kept-alive "
        f"clients, one text per request, model {args.model!r}, {args.rounds} round{'s' if args.rounds != 1 else ''} "
        f"in rotating order; latencies over every request of every run:\n",
        markdown_table(headers, table),
        "",
        f"every vector within cosine >= {MIN_COSINE} of the in-process one: yes, in every run of every server",
    ]
    for key in ("localmaker", "localmaker-onnx"):  # issue 16's goals, for each of localmaker's backends
        if key in rows:
            lines += goal_lines(key, rows, texts)
    return "\n".join(lines)


def goal_lines(key: str, rows: dict[str, Row], texts: int) -> list[str]:
    ours = rows[key]
    rate = ours.median_texts_per_s(texts)
    lines = []
    if "infinity" in rows:
        infinity = rows["infinity"]
        lines.append(f"{key} / infinity-emb = {rate / infinity.median_texts_per_s(texts):.2f}× (target ≥ 1.2×); "
                     f"p99 {percentile(ours.latencies, 0.99) * 1000:,.0f} ms vs infinity-emb's "
                     f"{percentile(infinity.latencies, 0.99) * 1000:,.0f} ms (target: below)")
    if "inprocess" in rows:
        lines.append(f"{key} / in-process batched = {rate / rows['inprocess'].median_texts_per_s(texts):.2f}× "
                     "(target ≥ 0.8×)")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--clients", type=int, default=32, help="concurrent client threads, one request each at a time")
    parser.add_argument("--rounds", type=int, default=2, help="rounds; each runs every server once")
    parser.add_argument("--only", nargs="+", choices=SERVERS, default=list(SERVERS), metavar="SERVER",
                        help=f"servers to run, of {', '.join(SERVERS)} (default: all)")
    parser.add_argument("--no-install", action="store_true",
                        help="skip a peer whose environment is not built yet, instead of building it")
    parser.add_argument("--batch-size", type=int, default=32, help="in-process encode batch size")
    parser.add_argument("--model", default="minilm", help="a named source or a model directory")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(machine_line())
    rows, peers = measure(args)
    print(f"after the run: {load_line()}")
    print(versions_line(peers))
    print(report(rows, args.texts, args))


if __name__ == "__main__":
    main()
