"""Overhead: what localmaker's container app adds to a request, against a bare Flask app under gunicorn.

A no-op handler (``model_fn`` returns None, ``transform_fn`` returns the body it got) is deployed through
localmaker; the baseline is ``benchmarks/bare_flask_app.py``, started with the very gunicorn command line
an instance gets (same config file, gthread worker, workers, threads, timeout and log files), only the
WSGI app differs. One client sends the same body to each, one request at a time over a kept-alive
connection; the two servers take turns in rounds, so drift on a shared machine hits both alike.

    python -m benchmarks.overhead [--requests 2000] [--warmup 200] [--rounds 10] [--body-bytes 1024]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import signal
import subprocess
import tarfile
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3

from benchmarks.reporting import ROLE, load_line, machine_line, markdown_table, percentile

REPO = Path(__file__).resolve().parent.parent
BARE_APP = "benchmarks.bare_flask_app:app"
NOOP_HANDLER = """
    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return body, content_type
"""


def noop_artifact(folder: Path) -> str:
    """A code-only model.tar.gz: the no-op handler needs no weights."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "model.tar.gz"
    script = textwrap.dedent(NOOP_HANDLER).encode()
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("code/inference.py")
        info.size = len(script)
        tar.addfile(info, io.BytesIO(script))
    return f"file://{archive}"


def deploy_noop(session: Any, folder: Path) -> str:
    """Deploy the no-op handler with the default server settings; returns the instance URL."""
    from localmaker.deploy import Model

    name = f"overhead-{uuid.uuid4().hex[:6]}"
    Model(model_data=noop_artifact(folder), role=ROLE, sagemaker_session=session).deploy(
        initial_instance_count=1, instance_type="ml.m5.large", endpoint_name=name)
    return session.local_endpoint(name).instances[0].url


@contextlib.contextmanager
def bare_server(folder: Path, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """The bare app under an instance's own gunicorn command line; yields its URL, and always reaps it."""
    from localmaker.control_plane.instance_process import free_port
    from localmaker.local_endpoint.launch import WSGI_TARGET, gunicorn_command

    port = free_port()
    command = gunicorn_command(f"127.0.0.1:{port}", os.environ, folder / "bare.log")
    assert command[-1] == WSGI_TARGET
    # The watchdog in the shared gunicorn config stops the server should this process die unannounced.
    env = {**os.environ, "LOCALMAKER_PARENT_PID": str(os.getpid()), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([*command[:-1], BARE_APP], cwd=REPO, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None:
                    raise RuntimeError(f"the bare gunicorn exited with {process.returncode}; "
                                       f"see {folder / 'bare.log'}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the bare gunicorn did not answer within {startup_timeout_s:.0f}s") from None
                time.sleep(0.1)
        yield url
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (master and workers), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


class SequentialClient:
    """One connection, one request at a time; checks every answer is the body sent back."""

    def __init__(self, url: str, body: bytes) -> None:
        parts = urlsplit(url)
        self.pool = urllib3.HTTPConnectionPool(parts.hostname or "127.0.0.1", parts.port, maxsize=1, block=True,
                                               retries=False, timeout=30.0)
        self.body = body
        self.latencies_s: list[float] = []

    def send(self, count: int, record: bool = True) -> None:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        for _ in range(count):
            began = time.perf_counter()
            answer = self.pool.request("POST", "/invocations", body=self.body, headers=headers)
            elapsed = time.perf_counter() - began
            if answer.status != 200 or answer.data != self.body:
                raise RuntimeError(f"unexpected answer: HTTP {answer.status}, {answer.data[:200]!r}")
            if record:
                self.latencies_s.append(elapsed)

    def close(self) -> None:
        self.pool.close()


def json_body(size: int) -> bytes:
    """A JSON document of exactly ``size`` bytes (at least the 14 bytes of its frame)."""
    frame = b'{"inputs": ""}'
    return frame[:-2] + b"x" * max(0, size - len(frame)) + frame[-2:]


def measure(args: argparse.Namespace) -> tuple[SequentialClient, SequentialClient]:
    """Latencies of the endpoint and of the bare server, alternating in rounds."""
    from localmaker.deploy import Session

    body = json_body(args.body_bytes)
    with tempfile.TemporaryDirectory(prefix="localmaker-overhead-") as folder, \
            Session(work_root=Path(folder) / "control-plane") as session, \
            bare_server(Path(folder)) as bare_url:
        endpoint = SequentialClient(deploy_noop(session, Path(folder) / "noop"), body)
        bare = SequentialClient(bare_url, body)
        try:
            for client in (endpoint, bare):
                client.send(args.warmup, record=False)
            per_round = max(1, args.requests // args.rounds)
            for round_index in range(args.rounds):
                order = (endpoint, bare) if round_index % 2 == 0 else (bare, endpoint)
                for client in order:
                    client.send(per_round)
        finally:
            endpoint.close()
            bare.close()
    return endpoint, bare


def report(endpoint: SequentialClient, bare: SequentialClient, args: argparse.Namespace) -> str:
    def row(label: str, client: SequentialClient) -> list[object]:
        values = client.latencies_s
        return [label, len(values), f"{percentile(values, 0.5) * 1000:.3f}", f"{percentile(values, 0.99) * 1000:.3f}",
                f"{sum(values) / len(values) * 1000:.3f}"]

    table = markdown_table(["server", "requests", "p50 ms", "p99 ms", "mean ms"], [
        row("localmaker endpoint, no-op handler (transform_fn echoes the body)", endpoint),
        row("bare Flask app, same gunicorn command line", bare),
    ])
    p50 = percentile(endpoint.latencies_s, 0.5) / percentile(bare.latencies_s, 0.5)
    p99 = percentile(endpoint.latencies_s, 0.99) / percentile(bare.latencies_s, 0.99)
    return "\n".join([
        f"\n{args.body_bytes}-byte JSON body echoed back, one client, sequential requests, kept-alive connection, "
        f"{args.warmup} warm-up requests each, then {args.rounds} alternating rounds:\n",
        table,
        "",
        f"p99 endpoint / bare = {p99:.2f}×",
        f"p50 endpoint / bare = {p50:.2f}× (target ≤ 1.5×)",
    ])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per server")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per server first")
    parser.add_argument("--rounds", type=int, default=10, help="the servers alternate this many times")
    parser.add_argument("--body-bytes", type=int, default=1024)
    args = parser.parse_args(argv)

    print(machine_line())
    endpoint, bare = measure(args)
    print(f"after the run: {load_line()}")
    print(report(endpoint, bare, args))


if __name__ == "__main__":
    main()
