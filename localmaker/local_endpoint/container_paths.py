"""SageMaker's paths inside a process: ``/opt/ml/model`` (and a training job's ``/opt/ml/*``), bound to the
process's own folders, without root and without touching the host's ``/opt``.

Real scripts and the SDK's own serving code hard-code ``/opt/ml/model`` and ``/opt/ml/model/code``. An
instance or a training job here therefore runs in a private *user and mount namespace* of its own (Linux):
there it may mount, as an unprivileged user, what nobody else sees. Elsewhere (not Linux), when the kernel
refuses (sysctl ``kernel.unprivileged_userns_clone=0``, AppArmor's userns restriction, a container's seccomp
profile), or when ``LOCALMAKER_CONTAINER_PATHS=host`` says so, processes see their host folders as before,
and one log line says why.

**The mechanism: a tiny exec wrapper, this file run as a script.** The control plane starts
``python -I -S container_paths.py SPEC -- COMMAND...`` (in its own session, with the parent-death signal
armed, as before). The wrapper calls ``unshare(CLONE_NEWUSER | CLONE_NEWNS)``, maps its own uid and gid,
sets up the mounts, and ``exec``s COMMAND. So the pid the control plane holds is COMMAND's pid, the leader of
the group that stop and reap signal; no pid namespace is made, so gunicorn's watchdog still sees its parent's
real pid; and ``PR_SET_PDEATHSIG`` survives both ``unshare`` (the new namespace is a child of ours, owned by our
uid, so the kernel keeps the signal) and ``exec`` of a binary that is not set-uid. Rejected alternatives:
``unshare(1)`` needs util-linux and still needs a step to mount; an ``unshare`` in ``preexec_fn`` runs Python
between ``fork`` and ``exec`` of a multi-threaded control plane (deadlock-prone), and ``os.unshare`` is
Python 3.12+. The wrapper is a fresh, single-threaded interpreter (``unshare(CLONE_NEWUSER)`` refuses
threaded callers) that imports only the standard library (``-I -S``: no site, no PYTHONPATH).

**The ids.** The wrapper maps only its own uid and gid, to themselves: the script sees the same uid as the
control plane (root stays root, a user stays that user), and whatever it creates on a bound folder belongs
to that uid on the host. Files of ids that are not mapped show as ``nobody``; root in the namespace keeps no
override over files of other users that their own permission bits deny. The same recipe runs for every uid.

**The mounts**, after ``/`` is made recursively private so that nothing propagates to the host:

1. open (``O_PATH``) the host's ``/opt`` and every folder to be bound, while they are still visible;
2. mount a fresh tmpfs on ``/opt`` (only this namespace sees it; the host's ``/opt`` is not written);
3. put each entry of the host's ``/opt`` back: a bind mount (recursive) of a folder or a file, a copy of a
   symlink, so that a Python or a toolchain installed under ``/opt`` keeps working;
4. create ``/opt/ml/...`` in the tmpfs and bind each of the process's own folders there.

A tmpfs with bind mounts rather than overlayfs: overlayfs in a user namespace needs Linux 5.11+ and does not
show mounts nested under its lower folder, while bind mounts and tmpfs work on every kernel that allows user
namespaces. The binds are read-write: what the process writes under ``/opt/ml/...`` lands in its host folder.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

ENV_VAR = "LOCALMAKER_CONTAINER_PATHS"
MODES = ("auto", "host")  # auto: /opt/ml where namespaces work; host: always the host folders
MODEL_DIR = "/opt/ml/model"
INPUT_DIR = "/opt/ml/input"
OUTPUT_DIR = "/opt/ml/output"
CODE_DIR = "/opt/ml/code"
WRAPPER_FAILED = 125  # the wrapper's exit code when it could not set the paths up (as env(1) and docker use)
PROBE_TIMEOUT_S = 30.0

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_MS_NOSUID, _MS_NODEV, _MS_BIND, _MS_REC, _MS_PRIVATE = 2, 4, 4096, 16384, 1 << 18


@dataclass(frozen=True)
class ContainerPaths:
    """Whether processes see SageMaker's ``/opt/ml`` paths: read once from ``LOCALMAKER_CONTAINER_PATHS``."""

    mode: str = "auto"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ContainerPaths:
        mode = environ.get(ENV_VAR, "").strip().lower() or "auto"
        if mode not in MODES:
            from localmaker.errors import ConfigurationError

            raise ConfigurationError(f"{ENV_VAR}={environ[ENV_VAR]!r} is not one of {', '.join(MODES)}: auto shows "
                                     "processes /opt/ml where Linux namespaces allow it, host never does")
        return cls(mode)

    def active(self) -> bool:
        """True when processes started now see ``/opt/ml``; the first time it is not, one line says why."""
        if self.mode == "host":
            _log_once(logging.INFO, f"container paths: {ENV_VAR}=host, so instances and training jobs see their "
                                    "host folders rather than /opt/ml")
            return False
        reason = _probe_once()
        if reason:
            _log_once(logging.WARNING, f"container paths: /opt/ml is unavailable ({reason}); instances and training "
                                       f"jobs see their host folders instead (set {ENV_VAR}=host to skip this check)")
        return not reason

    @staticmethod
    def command(command: Sequence[str], binds: Mapping[str, Path], cwd: str | None = None) -> list[str]:
        """``command`` wrapped so that it runs with ``binds`` (container path -> host folder) mounted, in ``cwd``."""
        spec = {"binds": {target: str(Path(source).resolve()) for target, source in binds.items()}, "cwd": cwd}
        return [*_wrapper(), json.dumps(spec), "--", *command]


# -- the control plane's side: one probe per process ------------------------------------------------------

_probe_lock = threading.Lock()
_probe_result: str | None = None
_logged: set[str] = set()


def _wrapper() -> list[str]:
    return [sys.executable, "-I", "-S", str(Path(__file__).resolve())]


def _probe_once() -> str:
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = probe()
        return _probe_result


def _log_once(level: int, message: str) -> None:
    with _probe_lock:
        if message in _logged:
            return
        _logged.add(message)
    logger.log(level, message)


def probe() -> str:
    """Why the wrapper cannot give a process ``/opt/ml`` here, or "" when it can.

    It runs the whole recipe once, binding a scratch folder at /opt/ml/model, and checks that a file written
    there arrives in that folder on the host, owned by this uid.
    """
    if not sys.platform.startswith("linux"):
        return f"Linux namespaces are needed and this is {sys.platform}"
    with tempfile.TemporaryDirectory(prefix="localmaker-probe-") as scratch:
        marker = Path(scratch) / "probe"
        write = f"open({MODEL_DIR + '/probe'!r}, 'w').write('ok')"
        command = ContainerPaths.command([sys.executable, "-I", "-S", "-c", write], {MODEL_DIR: Path(scratch)})
        try:
            result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=PROBE_TIMEOUT_S, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"the namespace probe could not run: {exc}"
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return lines[-1] if lines else f"the namespace probe exited with code {result.returncode}"
        if not marker.is_file() or marker.stat().st_uid != os.getuid():
            return "a file written to /opt/ml/model did not reach its host folder as this user's"
    return ""


# -- the wrapper's side: runs in the child, between the control plane's fork and COMMAND ---------------------

def enter(binds: Mapping[str, str], cwd: str | None = None) -> None:
    """Move this (single-threaded) process into a user and mount namespace where ``binds`` hold."""
    for target in binds:
        if not target.startswith("/opt/") or ".." in target.split("/"):
            raise ValueError(f"{target!r} is not a path under /opt")
    if not os.path.isdir("/opt"):
        raise OSError("the host has no /opt folder to put /opt/ml in")
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNS), "unshare(CLONE_NEWUSER | CLONE_NEWNS)")
    _write("/proc/self/setgroups", "deny", missing_ok=True)  # required before gid_map (absent before Linux 3.19)
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _mount(libc, None, "/", None, _MS_REC | _MS_PRIVATE)
    host_opt = os.open("/opt", os.O_RDONLY | os.O_DIRECTORY)
    sources = {target: os.open(source, os.O_PATH) for target, source in binds.items()}
    tops = {target.split("/")[2] for target in binds}  # the /opt entries that the binds replace ("ml")
    entries = [(name, os.lstat(name, dir_fd=host_opt)) for name in sorted(os.listdir(host_opt)) if name not in tops]
    _mount(libc, "tmpfs", "/opt", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=755")
    for name, status in entries:
        place = f"/opt/{name}"
        if stat.S_ISLNK(status.st_mode):
            os.symlink(os.readlink(name, dir_fd=host_opt), place)
            continue
        if stat.S_ISDIR(status.st_mode):
            os.mkdir(place)
        else:
            open(place, "x").close()
        _mount(libc, f"/proc/self/fd/{host_opt}/{name}", place, None, _MS_BIND | _MS_REC)
    for target in sorted(binds, key=len):
        if stat.S_ISDIR(os.fstat(sources[target]).st_mode):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()
        _mount(libc, f"/proc/self/fd/{sources[target]}", target, None, _MS_BIND | _MS_REC)
    for fd in (host_opt, *sources.values()):
        os.close(fd)
    if cwd:
        os.chdir(cwd)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what} was refused: {os.strerror(errno)}")


def _mount(libc: ctypes.CDLL, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    result = libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {source or ''} on {target}")


def _write(path: str, text: str, missing_ok: bool = False) -> None:
    try:
        with open(path, "w") as file:
            file.write(text)
    except FileNotFoundError:
        if not missing_ok:
            raise
    except OSError as exc:
        raise OSError(exc.errno, f"writing {path!r} was refused: {exc.strerror}") from None


def main(argv: Sequence[str]) -> None:
    """``container_paths.py SPEC -- COMMAND...``: enter the namespace SPEC describes, then exec COMMAND."""
    if len(argv) < 3 or argv[1] != "--":
        sys.exit(f"usage: {Path(__file__).name} SPEC -- COMMAND...")
    spec, command = json.loads(argv[0]), list(argv[2:])
    try:
        enter(spec["binds"], spec.get("cwd"))
    except (OSError, ValueError) as exc:
        print(f"localmaker: cannot give this process SageMaker's /opt/ml paths: {exc}", file=sys.stderr)
        sys.exit(WRAPPER_FAILED)
    # Python ignores these two; what COMMAND inherits should be the defaults, as subprocess restores them.
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    sys.stdout.flush()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
