"""The servers the peer benchmark compares, as real processes, and the clients that load them.

Each peer runs as its own server in a subprocess on 127.0.0.1, from its own venv, with its own HTTP API;
the benchmark reaches every server the same way: kept-alive connections, one text per request. A server
starts in a session of its own so that stopping it ends the whole process group (litserve forks worker
processes) and nothing outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import urllib3

from benchmarks.http_clients import HttpApi
from benchmarks.peer_envs import INFINITY, PeerEnv

LITSERVE_APP = Path(__file__).resolve().with_name("litserve_app.py")
QUIET_ENV = {  # offline, and no telemetry calls that would wait on a network this machine does not have
    "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
    "DO_NOT_TRACK": "1", "LITSERVE_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false",
}


INFINITY_API = HttpApi("/embeddings", lambda text: {"model": "minilm", "input": [text]},
                       lambda answer: answer["data"][0]["embedding"])
LITSERVE_API = HttpApi("/predict", lambda text: {"input": text}, lambda answer: answer["embedding"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """A peer server in its own process group; ``stop()`` ends the group and reaps the leader."""

    def __init__(self, name: str, command: list[str], health_path: str, port: int, log_file: Path) -> None:
        self.name, self.port, self.log_file = name, port, log_file
        self.url = f"http://127.0.0.1:{port}"
        self._health_path = health_path
        # Run from the log's folder (the benchmark's temp dir): infinity writes a cache folder into its cwd.
        work = log_file.parent
        with log_file.open("w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env={**os.environ, **QUIET_ENV, "INFINITY_HOME": str(work)},
                                            cwd=work, start_new_session=True)

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        """Poll the health route until it answers 200; fail at once if the server exits first."""
        pool = urllib3.HTTPConnectionPool("127.0.0.1", self.port, retries=False, timeout=2.0)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode} before it was ready; "
                                       f"the end of its log {self.log_file}:\n{self.log_tail()}")
                try:
                    if pool.request("GET", self._health_path).status == 200:
                        return
                except urllib3.exceptions.HTTPError:
                    pass
                time.sleep(0.5)
        finally:
            pool.close()
        raise RuntimeError(f"{self.name} was not ready after {timeout_s:.0f} s; its log {self.log_file}:\n"
                           f"{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the group; once the leader has exited (or after 20 s), SIGKILL to whatever is left."""
        group = self.process.pid  # start_new_session: the leader's pid is the group's id
        self._signal_group(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=20)
        self._signal_group(group, signal.SIGKILL)  # workers the leader left behind, or the leader itself
        self.process.wait()
        deadline = time.monotonic() + 10  # SIGKILL lands asynchronously: return only once the group is empty
        while time.monotonic() < deadline:
            try:
                os.killpg(group, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    @staticmethod
    def _signal_group(group: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)


def start_infinity(model_dir: Path, work: Path) -> ServerProcess:
    """infinity-emb's own CLI, torch engine on the CPU, its default batching (batch size 32)."""
    port = free_port()
    command = [str(INFINITY.executable("infinity_emb")), "v2", "--model-id", str(model_dir.resolve()),
               "--served-model-name", "minilm", "--engine", "torch", "--device", "cpu",
               "--host", "127.0.0.1", "--port", str(port)]
    return ServerProcess("infinity-emb", command, "/health", port, work / "infinity.log")


def start_litserve(env: PeerEnv, model_dir: Path, work: Path, max_batch_size: int = 32,
                   batch_timeout_s: float = 0.01) -> ServerProcess:
    port = free_port()
    command = [str(env.python), str(LITSERVE_APP), str(model_dir.resolve()), str(port), str(max_batch_size),
               str(batch_timeout_s)]
    return ServerProcess("litserve", command, "/health", port, work / "litserve.log")
