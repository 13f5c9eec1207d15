"""Where a failure's evidence is: the instance log a failed deployment or a 500 came from, and the end of
the traceback in it, cut down to the user's own frames (``inference.py, line 7, in model_fn``).

The container never puts a traceback into an HTTP answer (docs/design.md, "Map errors in one place"); it
logs it. The client reads that log here, because on the local target it is a file on this machine: the
exception a script or a test sees then names the file and line to fix, and the log to read for the rest.
Nothing here may hide the original error: whatever cannot be read is left out, never raised.
"""

from __future__ import annotations

import re
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localmaker.deploy.endpoint_view import InstanceView
    from localmaker.deploy.session import Session

_TRACEBACK = "Traceback (most recent call last):"
_FRAME = re.compile(r'^  File "(?P<file>[^"]+)", line \d+')
# A log record or gunicorn/access line: where an exception's own (possibly multi-line) text stops.
_RECORD = re.compile(r"^(\[?\d{4}-\d\d-\d\d|\d+\.\d+\.\d+\.\d+ - )")
_MAX_EXCEPTION_LINES = 5
_TAIL_BYTES = 256 * 1024
_LOCALMAKER = str(Path(__file__).resolve().parents[1])
# Frames from these are the toolkit's and Python's, never the user's code.
_NOT_USERS = tuple(p for p in {_LOCALMAKER, sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                               sysconfig.get_paths()["platlib"]} if p)


def traceback_tail(log_text: str, message: str = "") -> str:
    """The user's frames and the exception line of the last traceback in ``log_text`` (the last one whose
    exception appears in ``message``, where one does); "" when the log holds none."""
    blocks = _tracebacks(log_text.splitlines())
    if not blocks:
        return ""
    matching = [b for b in blocks if b[1] and b[1][0].strip() in message] if message else []
    frames, exception = (matching or blocks)[-1]
    users = [frame for frame in frames if not _is_library(frame[0])]
    kept = users or frames[-2:]  # a failure inside a library alone: its last frames still say where
    return "\n".join([line for frame in kept for line in frame] + exception)


def _tracebacks(lines: list[str]) -> list[tuple[list[list[str]], list[str]]]:
    """Each traceback as (frames, each its lines; the exception's lines)."""
    found = []
    starts = [i for i, line in enumerate(lines) if line.rstrip().endswith(_TRACEBACK)]
    for start in starts:
        frames: list[list[str]] = []
        exception: list[str] = []
        for line in lines[start + 1:]:
            if _FRAME.match(line):
                frames.append([line])
            elif line.startswith("    ") and frames and not exception:
                frames[-1].append(line)
            elif exception and (_RECORD.match(line) or line.rstrip().endswith(_TRACEBACK) or not line.strip()
                                or len(exception) >= _MAX_EXCEPTION_LINES):
                break
            else:
                exception.append(line)
        if frames:
            found.append((frames, exception))
    return found


def _is_library(frame_line: str) -> bool:
    match = _FRAME.match(frame_line)
    path = match.group("file") if match else ""
    return path.startswith("<") or path.startswith(_NOT_USERS)


def _read_tail(log_file: Path) -> str:
    try:
        with open(log_file, "rb") as log:
            size = log.seek(0, 2)
            log.seek(max(0, size - _TAIL_BYTES))
            return log.read().decode("utf-8", "replace")
    except OSError:
        return ""


def pointer(instances: Iterable[InstanceView], message: str) -> str:
    """"See the instance log <path> for more information. Its traceback ends: ..." for the newest log of
    ``instances`` that holds a traceback (the first log, without one); "" when there is no log at all."""
    logs = [i.log_file for i in instances]
    best: tuple[float, Path, str] | None = None
    for log in logs:
        tail = traceback_tail(_read_tail(log), message)
        if tail:
            try:
                when = log.stat().st_mtime
            except OSError:
                continue
            if best is None or when > best[0]:
                best = (when, log, tail)
    if best is not None:
        return f"See the instance log {best[1]} for more information. Its traceback ends:\n{best[2]}"
    return f"See the instance log {logs[0]} for more information." if logs else ""


def endpoint_pointer(session: Session, endpoint_name: str, message: str, instance_url: str | None = None) -> str:
    """The pointer for ``endpoint_name``'s instances (only the one at ``instance_url``, where the call went
    to it directly); "" on real AWS, or when the control plane cannot say."""
    if not session.is_local:
        return ""
    try:
        view = session.local_endpoint(endpoint_name)
    except Exception:  # noqa: BLE001 - the evidence is a courtesy; the error being reported must win
        return ""
    instances = [*view.instances, *view.retired]
    if instance_url is not None:
        instances = [i for i in instances if i.url == instance_url] or instances
    return pointer(instances, message)
