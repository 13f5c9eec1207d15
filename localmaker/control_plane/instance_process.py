"""One simulated instance: a gunicorn process serving the container app on a loopback port."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from localmaker.control_plane.log_rotation import log_tail
from localmaker.control_plane.process_groups import reap_group
from localmaker.local_endpoint.container_paths import MODEL_DIR, ContainerPaths
from localmaker.local_endpoint.launch import gunicorn_command, instance_environment
from localmaker.local_endpoint.settings import model_server_timeout

logger = logging.getLogger(__name__)

STOP_GRACE_S = 10.0  # how long a stopping instance gets before SIGKILL
DRAIN_MARGIN_S = 5.0  # beyond the model-server timeout, for the master to see its workers out
KILLED_WAIT_S = 5.0  # how long reaping waits for a master after SIGKILL to its group


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class PingResult:
    healthy: bool
    failed: bool = False
    message: str = ""


class InstanceProcess:
    """Owns one gunicorn master (and so its workers) from start to reaping.

    The master runs in its own process group so that stopping it reaches every worker, even one stuck
    in a forward pass. With ``container_paths`` active, it sees ``model_dir`` as ``/opt/ml/model``: the
    wrapper that mounts it execs gunicorn, so the pid held here is still the master's, and its group's.
    """

    def __init__(self, instance_id: str, model_dir: Path, log_file: Path, env: dict[str, str],
                 host: str = "127.0.0.1", port: int | None = None, region: str | None = None,
                 container_paths: ContainerPaths | None = None) -> None:
        self.instance_id = instance_id
        self.model_dir = model_dir
        self.log_file = log_file
        self.host = host
        self.port = port or free_port(host)
        self._env = env
        self._region = region
        self._container_paths = container_paths
        self._process: subprocess.Popen[bytes] | None = None
        self.drain_s = STOP_GRACE_S

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        in_container = self._container_paths is not None and self._container_paths.active()
        env = instance_environment(MODEL_DIR if in_container else self.model_dir, self.log_file, self._env,
                                   self._region)
        env["LOCALMAKER_PARENT_PID"] = str(os.getpid())
        # Retiring from a live fleet waits for requests in flight, which may run to the model timeout.
        self.drain_s = model_server_timeout(env) + DRAIN_MARGIN_S
        command = gunicorn_command(f"{self.host}:{self.port}", env, self.log_file)
        if in_container:
            command = ContainerPaths.command(command, {MODEL_DIR: self.model_dir})
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting instance %s on %s", self.instance_id, self.url)
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def exited(self) -> int | None:
        """The exit code once the master has died, else None."""
        return self._process.poll() if self._process else 0

    def ping(self, timeout: float = 2.0) -> PingResult:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=timeout) as response:
                return PingResult(healthy=response.status == 200)
        except urllib.error.HTTPError as exc:
            try:
                error = json.loads(exc.read() or b"{}").get("error", {})
            except ValueError:
                error = {}
            return PingResult(healthy=False, failed=error.get("code") == "ModelLoadFailed",
                              message=str(error.get("message", "")))
        except (urllib.error.URLError, OSError):
            return PingResult(healthy=False)

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(log_tail(self.log_file).splitlines()[-lines:])

    def terminate(self) -> None:
        """Ask the whole process group to stop (gunicorn drains in-flight requests on SIGTERM)."""
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)

    def reap(self, grace_s: float = STOP_GRACE_S) -> None:
        """Wait for a terminated instance, then SIGKILL whatever is left of its group."""
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("instance %s ignored SIGTERM; killing it", self.instance_id)
        # Workers can outlive a master that died abruptly; the group id still names them.
        reap_group(process, timeout_s=KILLED_WAIT_S)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        self.terminate()
        self.reap(grace_s)
