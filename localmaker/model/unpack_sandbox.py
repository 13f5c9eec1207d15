"""Run an unpack in a child process, so an archive can cost the caller nothing but a wait.

The control plane unpacks every artifact in its own process before this: a PAX header that sent
tarfile's regex into quadratic time froze every request for as long as the regex held the interpreter
lock (59 s), and a long name declaring 1 GiB grew it by a gigabyte. Now the child does the work, under
the CPU, memory and file-size limits it sets on itself (``unpack_child``), and this side waits for it
with a wall-clock deadline, kills it when the deadline passes, and always reaps it. The caller's thread
only waits on a pipe, so other requests go on being served meanwhile.

Why a fresh ``python -m`` rather than ``multiprocessing``: ``fork`` would copy a multi-threaded control
plane mid-flight (locks held by other threads stay held in the child), and ``spawn`` re-imports the
parent's ``__main__``, which for a user's script without a ``__name__`` guard means running the script
again; it also costs more (measured: spawn 206-375 ms, ``python -m`` 130-159 ms, see docs/reliability.md).

The child writes the name of the member it is reading into a small progress file before reading it, so
when it is killed for time the refusal still names the member.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import localmaker
from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.archive_limits import ArchiveLimits
from localmaker.model.tar_prescan import shown

CHILD_MODULE = "localmaker.model.unpack_child"
PROGRESS_BYTES = 8192  # a name is at most max_name_bytes (4096) long; its UTF-8 replacement fits
_GRACE_S = 5.0  # the child's own alarm fires first; this side's deadline only covers a child that hangs
_ERRORS: dict[str, type[Exception]] = {"ArtifactError": ArtifactError, "ConfigurationError": ConfigurationError}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this very localmaker, also when it runs from a source checkout.
    package_root = str(Path(localmaker.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH", "")]))
    return env


def _last_member(progress: Path) -> str | None:
    try:
        raw = progress.read_bytes()[:PROGRESS_BYTES].rstrip(b"\0")
    except OSError:
        return None
    return raw.decode("utf-8", "replace") if raw else None


def _where(member: str | None) -> str:
    return f"member {shown(member)}" if member is not None else "the first member's header"


def _killed_reason(archive: Path, returncode: int, member: str | None, limits: ArchiveLimits,
                   cpu_s: int, wall_s: float) -> str:
    where = _where(member)
    limit = {
        -signal.SIGXCPU: f"its {cpu_s}-second CPU limit",
        -signal.SIGALRM: f"its {wall_s:.0f}-second time limit",
        -signal.SIGXFSZ: f"the {limits.max_total_bytes}-byte limit on a file's size",
        -signal.SIGKILL: f"its {cpu_s}-second CPU limit or the machine's memory (it was killed)",
    }.get(returncode)
    if limit is None:
        return f"refusing to unpack {archive}: the unpacking process failed at {where} (exit status {returncode})"
    return f"refusing to unpack {archive}: unpacking was stopped at {where}, having reached {limit}"


def unpack_in_child(archive: Path, dest: Path, scratch: Path, limits: ArchiveLimits) -> int:
    """Unpack ``archive`` into ``dest`` (by way of the empty folder ``scratch``) in a child process under
    ``limits``; the number of members.

    Raises what the child raised (ArtifactError, ConfigurationError), with its message, or an
    ArtifactError naming the member and the limit when the child was stopped.
    """
    size = archive.stat().st_size
    cpu_s, wall_s = limits.cpu_seconds(size), limits.wall_seconds(size)
    fd, progress_name = tempfile.mkstemp(prefix="localmaker-unpack-", suffix=".progress")
    os.close(fd)
    progress = Path(progress_name)
    command = [sys.executable, "-m", CHILD_MODULE, str(archive), str(dest), str(scratch), str(progress),
               limits.to_json(), str(cpu_s), repr(wall_s), str(os.getpid())]
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, env=_environment())
        try:
            out, err = process.communicate(timeout=wall_s + _GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise ArtifactError(_killed_reason(archive, -signal.SIGALRM, _last_member(progress), limits,
                                               cpu_s, wall_s)) from None
        finally:
            if process.poll() is None:  # interrupted (KeyboardInterrupt, a stop): never leave it running
                process.kill()
                process.wait()
        lines = out.decode("utf-8", "replace").strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else {}
        except ValueError:
            result = {}
        if process.returncode == 0 and "members" in result:
            return int(result["members"])
        if "error" in result:
            raise _ERRORS.get(result["error"], ArtifactError)(result["message"])
        if process.returncode < 0:
            raise ArtifactError(_killed_reason(archive, process.returncode, _last_member(progress), limits,
                                               cpu_s, wall_s))
        detail = err.decode("utf-8", "replace").strip().splitlines()
        raise ArtifactError(f"refusing to unpack {archive}: the unpacking process failed at "
                            f"{_where(_last_member(progress))} (exit status {process.returncode})"
                            + (f": {detail[-1]}" if detail else ""))
    finally:
        progress.unlink(missing_ok=True)
