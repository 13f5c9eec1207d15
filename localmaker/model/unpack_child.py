"""The unpacking process: ``python -m localmaker.model.unpack_child ARCHIVE DEST SCRATCH PROGRESS ...``.

Started only by ``unpack_sandbox``, which passes the rest (LIMITS, CPU, WALL, its own pid). It limits
itself before it opens the archive, because a limit set from the parent would need ``preexec_fn``,
which runs Python between ``fork`` and ``exec`` of a multi-threaded control plane (deadlock-prone).
The limits: CPU seconds (SIGXCPU), address space (MemoryError), file size (SIGXFSZ), no core dumps,
and a wall-clock ``alarm`` left at its default action, so the kernel ends the process even while C
code holds the interpreter lock. It dies with its parent: ``PR_SET_PDEATHSIG`` on Linux (it follows
the forking thread, which here waits for this process, so it fires only when the caller is gone),
else a thread that watches the parent pid.

It prints one JSON line: ``{"members": N}``, or ``{"error": CLASS, "message": TEXT}``; and it writes the
name of each member into PROGRESS before reading it, so a refusal for time can still name the member.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.archive_limits import ArchiveLimits
from localmaker.model.safe_tar import unpack_here
from localmaker.model.tar_prescan import shown
from localmaker.model.unpack_sandbox import PROGRESS_BYTES


def _die_with_parent(parent: int) -> None:
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) == 0  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    if armed:
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_self(limits: ArchiveLimits, cpu_s: int, wall_s: float) -> None:
    def cap(kind: int, soft: int, hard: int) -> None:
        _, ceiling = resource.getrlimit(kind)
        if ceiling != resource.RLIM_INFINITY:  # never above what this process was given
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(kind, (soft, hard))

    cap(resource.RLIMIT_CPU, cpu_s, cpu_s + 1)  # SIGXCPU at the soft limit; SIGKILL if that is ignored
    cap(resource.RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)
    cap(resource.RLIMIT_FSIZE, limits.max_total_bytes + 1, limits.max_total_bytes + 1)
    cap(resource.RLIMIT_CORE, 0, 0)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, math.ceil(wall_s)))


class _Progress:
    """The member being read, overwritten in place in a fixed-size file: one system call per member."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY)
        self.current: str | None = None

    def where(self) -> str:
        """The member being read, or, before the first, its header: for a refusal's message."""
        return f"member {shown(self.current)}" if self.current is not None else "the first member's header"

    def __call__(self, name: str) -> None:
        self.current = name
        os.pwrite(self.fd, name.encode("utf-8", "replace")[:PROGRESS_BYTES].ljust(PROGRESS_BYTES, b"\0"), 0)


def main(argv: list[str]) -> int:
    archive, dest, scratch, progress_path, limits_json, cpu, wall, parent = argv
    _die_with_parent(int(parent))
    limits = ArchiveLimits.from_json(limits_json)
    _limit_self(limits, int(cpu), float(wall))
    progress = _Progress(Path(progress_path))
    result: dict[str, object]
    try:
        members = unpack_here(Path(archive), Path(dest), limits, progress, Path(scratch))
    except (ArtifactError, ConfigurationError) as exc:
        result = {"error": type(exc).__name__, "message": str(exc)}
    except MemoryError:
        result = {"error": "ArtifactError",
                  "message": f"refusing to unpack {archive}: {progress.where()} needs more than the "
                             f"{limits.memory_bytes}-byte memory limit of the unpacking process"}
    except Exception as exc:  # noqa: BLE001 - whatever else breaks is the archive's fault; say where
        result = {"error": "ArtifactError",
                  "message": f"refusing to unpack {archive}: {progress.where()} could not be read: "
                             f"{type(exc).__name__}: {exc}"}
    else:
        result = {"members": members}
    print(json.dumps(result), flush=True)
    return 0 if "members" in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
