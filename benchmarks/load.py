"""Load: many invocations at high concurrency against a 2-instance endpoint, with a worker killed partway.

Every request goes through the real InvokeEndpoint path (boto3 → control plane → gunicorn), once: botocore's
retries are off, so a failure is reported, never hidden by a second attempt. The handler writes each
request id it runs to a ledger file, which is how "none lost, none duplicated" is checked on the server
side as well as the client side. Bounded in count and in time: it stops by itself.

    python -m benchmarks.load [--requests 5000] [--concurrency 64] [--instances 2] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from localmaker.spec.names import PLACEHOLDER_ROLE

ROLE = PLACEHOLDER_ROLE
ECHO_THREADS = 8  # gunicorn threads per worker: how many requests one killed worker can take down
ECHO_HANDLER = """
    import hashlib
    import json
    import os

    def model_fn(model_dir):
        return open(os.environ["LOAD_LEDGER"], "a", buffering=1)

    def input_fn(body, content_type):
        return json.loads(body)

    def predict_fn(data, ledger):
        digest = data["id"]
        for _ in range(300):  # a fraction of a millisecond of real work per request
            digest = hashlib.sha256(digest.encode()).hexdigest()
        ledger.write(data["id"] + "\\n")
        return {"id": data["id"], "pid": os.getpid(), "digest": digest}

    def output_fn(prediction, accept):
        return json.dumps(prediction), "application/json"
"""


@dataclass
class LoadReport:
    requests: int
    ok: int = 0
    clean_errors: Counter[str] = field(default_factory=Counter)
    malformed: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    lost: int = 0
    duplicated: int = 0
    worker_killed: int | None = None
    wall_s: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def table(self) -> str:
        rows = [
            ("requests", f"{self.requests}"),
            ("succeeded", f"{self.ok}"),
            ("clean errors", f"{sum(self.clean_errors.values())} {dict(self.clean_errors) or ''}".strip()),
            ("malformed responses", f"{len(self.malformed)}"),
            ("lost", f"{self.lost}"),
            ("duplicated", f"{self.duplicated}"),
            ("worker killed (pid)", f"{self.worker_killed}"),
            ("p50 latency", f"{self.percentile(0.50) * 1000:.1f} ms"),
            ("p99 latency", f"{self.percentile(0.99) * 1000:.1f} ms"),
            ("throughput", f"{self.requests / self.wall_s:.0f} req/s" if self.wall_s else "-"),
            ("answered well-formed", f"{(self.ok + sum(self.clean_errors.values())) / self.requests:.4f}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def worker_pids(master_pid: int) -> list[int]:
    """gunicorn workers are the master's children."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                children.append(int(entry))
    return children


def deploy_echo_endpoint(session: object, folder: Path, instances: int, workers: int) -> tuple[str, Path]:
    """An endpoint whose handler echoes request ids and records them in a ledger; returns (name, ledger)."""
    from localmaker.deploy import Model
    from localmaker.model.artifact import pack_handler

    ledger = folder / "ledger.txt"
    folder.mkdir(parents=True, exist_ok=True)
    ledger.touch()
    archive = pack_handler(textwrap.dedent(ECHO_HANDLER), folder / "model.tar.gz")
    name = f"load-{uuid.uuid4().hex[:6]}"
    Model(model_data=f"file://{archive}", role=ROLE,
          env={"LOAD_LEDGER": str(ledger), "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
               "LOCALMAKER_SERVER_THREADS": str(ECHO_THREADS)},
          sagemaker_session=session).deploy(initial_instance_count=instances, instance_type="ml.m5.large",
                                            endpoint_name=name)
    return name, ledger


def run_load(session: object, endpoint: str, ledger: Path, requests: int, concurrency: int,
             kill_at: float | None = 0.3, deadline_s: float = 600.0) -> LoadReport:
    """Send ``requests`` invocations from ``concurrency`` threads; kill one worker at ``kill_at`` of the way."""
    runtime = boto3.client(
        "sagemaker-runtime", endpoint_url=session.endpoint_url, region_name="us-east-1",  # type: ignore[attr-defined]
        aws_access_key_id="testing", aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, max_pool_connections=concurrency,
                      read_timeout=120, connect_timeout=10))
    report = LoadReport(requests=requests)
    lock = threading.Lock()
    done = 0
    stop_at = time.monotonic() + deadline_s
    victim_instance = session.local_endpoint(endpoint).instances[0]  # type: ignore[attr-defined]

    def one(request_id: str) -> None:
        nonlocal done
        if time.monotonic() > stop_at:
            outcome: tuple[str, object] = ("error", "DeadlineExceeded")
        else:
            started = time.perf_counter()
            try:
                answer = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                                 Body=json.dumps({"id": request_id}))
                body = json.loads(answer["Body"].read())
                outcome = ("ok", time.perf_counter() - started) if body.get("id") == request_id else (
                    "malformed", f"asked {request_id}, answered {body.get('id')}")
            except ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                well_formed = 400 <= status < 600 and error.get("Code") and "Traceback" not in str(exc)
                outcome = ("error", f"{error.get('Code')} {status}") if well_formed else ("malformed", str(exc))
            except (BotoCoreError, ValueError) as exc:
                outcome = ("malformed", repr(exc))
        with lock:
            kind, detail = outcome
            if kind == "ok":
                report.ok += 1
                report.latencies_s.append(float(detail))  # type: ignore[arg-type]
            elif kind == "error":
                report.clean_errors[str(detail)] += 1
            else:
                report.malformed.append(str(detail))
            done += 1
            kill_now = kill_at is not None and report.worker_killed is None and done >= kill_at * requests
            if kill_now:
                workers = worker_pids(victim_instance.pid)
                if workers:
                    report.worker_killed = workers[0]
        if kill_now and report.worker_killed:
            os.kill(report.worker_killed, signal.SIGKILL)

    ids = [f"req-{index:06d}" for index in range(requests)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, ids))
    report.wall_s = time.perf_counter() - started

    seen = Counter(line for line in ledger.read_text().splitlines() if line)
    report.duplicated = sum(1 for count in seen.values() if count > 1)
    answered = report.ok + sum(report.clean_errors.values()) + len(report.malformed)
    report.lost = requests - answered
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument("--kill-at", type=float, default=0.3, help="fraction of the run at which a worker is killed")
    parser.add_argument("--deadline", type=float, default=600.0, help="seconds after which requests stop being sent")
    args = parser.parse_args()

    from localmaker.deploy import Session

    with tempfile.TemporaryDirectory(prefix="localmaker-load-") as folder, \
            Session(work_root=Path(folder) / "control-plane") as session:
        endpoint, ledger = deploy_echo_endpoint(session, Path(folder) / "echo", args.instances, args.workers)
        report = run_load(session, endpoint, ledger, args.requests, args.concurrency, args.kill_at, args.deadline)
        print(f"\n{args.requests} invocations at concurrency {args.concurrency}, {args.instances} instances "
              f"x {args.workers} workers, one worker SIGKILLed at {args.kill_at:.0%}\n")
        print(report.table())
        for sample in report.malformed[:5]:
            print(f"  malformed: {sample}")


if __name__ == "__main__":
    main()
