"""Each peer server in a virtual environment of its own, under the cache folder, never in the project's.

A peer's pins (infinity-emb wants sentence-transformers < 4, for one) would fight the project's, and a
benchmark must not change what the project runs on. So each peer gets a venv under
``$LOCALMAKER_HOME/bench-peers/<peer>-<version>`` (``~/.cache/localmaker`` by default), built on first
use and reused after. torch is installed first and alone, at the project's own version: the CPU wheel of
that version lies on this machine's disk, while any other torch spec pulls a CUDA build of several GB.
The peer is installed after it, under a constraints file that keeps torch where it is and holds the peer's
other dependencies where its pins resolve. A venv counts as ready only once everything installed (a
marker file written last), so an interrupted build is started again rather than reused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from localmaker.model.sources import localmaker_home

READY_MARKER = "READY"  # holds `pip freeze` of the finished venv: which versions a table was measured with
INSTALL_LOG = "install.log"


def project_version(package: str) -> str:
    """The project's installed version of ``package``, less any local label (2.13.0+cpu -> 2.13.0)."""
    return metadata.version(package).split("+")[0]


@dataclass(frozen=True)
class PeerEnv:
    """One peer's venv: what to install, and under which extra constraints."""

    name: str
    version: str
    requirements: tuple[str, ...]
    constraints: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return localmaker_home() / "bench-peers" / f"{self.name}-{self.version}"

    @property
    def python(self) -> Path:
        return self.folder / "bin" / "python"

    def executable(self, name: str) -> Path:
        return self.folder / "bin" / name

    def ready(self) -> bool:
        return (self.folder / READY_MARKER).is_file() and self.python.exists()

    def installed(self) -> dict[str, str]:
        """``{package: version}`` from the ready venv's freeze, to print beside the table."""
        if not self.ready():
            return {}
        pins = {}
        for line in (self.folder / READY_MARKER).read_text().splitlines():
            name, sep, version = line.partition("==")
            if sep:
                pins[name.lower().replace("_", "-")] = version
        return pins


# infinity-emb 0.0.78 needs sentence-transformers < 4, which needs transformers 4.x, which needs
# huggingface_hub < 1.0; left open, pip backtracks through the huggingface_hub 1.x releases one at a time.
INFINITY = PeerEnv("infinity-emb", "0.0.78", ("infinity-emb[server,torch]==0.0.78",),
                   ("transformers<5", "huggingface_hub<1.0"))


def litserve_env() -> PeerEnv:
    """litserve has no model code of its own: its LitAPI encodes with the project's sentence-transformers."""
    return PeerEnv("litserve", "0.2.19",
                   ("litserve==0.2.19", f"sentence-transformers=={project_version('sentence-transformers')}",
                    f"transformers=={project_version('transformers')}"))


def ensure(env: PeerEnv, say: Callable[[str], None] = print) -> Path:
    """The peer venv's python, building the venv first if it is not ready; raises if an install fails."""
    if env.ready():
        return env.python
    torch = f"torch=={project_version('torch')}"
    say(f"setting up {env.name} {env.version} in its own environment {env.folder} "
        f"(first use only; takes a few minutes; log: {env.folder / INSTALL_LOG})")
    if env.folder.exists():
        shutil.rmtree(env.folder)  # a build that never finished: start clean rather than trust it
    env.folder.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    _run([sys.executable, "-m", "venv", str(env.folder)], env, "creating the venv", say, log_mode="w")
    _run([str(env.python), "-m", "pip", "install", torch], env, f"installing {torch} first", say)
    constraints = env.folder / "constraints.txt"
    constraints.write_text("\n".join((torch, *env.constraints)) + "\n")
    _run([str(env.python), "-m", "pip", "install", "-c", str(constraints), *env.requirements], env,
         f"installing {' '.join(env.requirements)} (constraints: {', '.join((torch, *env.constraints))})", say)
    freeze = subprocess.run([str(env.python), "-m", "pip", "freeze"], check=True, capture_output=True, text=True)
    (env.folder / READY_MARKER).write_text(freeze.stdout)
    say(f"  {env.name} {env.version} ready in {time.monotonic() - began:.0f} s")
    return env.python


def _run(command: list[str], env: PeerEnv, step: str, say: Callable[[str], None], log_mode: str = "a") -> None:
    say(f"  {env.name}: {step}")
    env.folder.mkdir(parents=True, exist_ok=True)
    log_path = env.folder / INSTALL_LOG
    with log_path.open(log_mode) as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    if code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{env.name}: {step} failed (exit {code}); the end of {log_path}:\n{tail}")
