"""Handler configuration, done only by entry points (CLI, server processes), never on import."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def configure_logging(log_file: Path | None = None, level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.setLevel(level)
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)


def add_file_log(log_file: Path, max_bytes: int = 64 * 1024**2) -> logging.Handler:
    """Copy localmaker's records into ``log_file`` (an embedded control plane's own log), whatever the
    script configured. Levels are left alone: what reaches the file is what the loggers already let
    through (warnings and errors, unless the script asks for more). Past ``max_bytes`` the file moves to
    ``<file>.1`` and starts again, as instance logs do (LOCALMAKER_MAX_LOG_MB), so it cannot fill the disk."""
    handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=1, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger("localmaker").addHandler(handler)
    return handler


def remove_file_log(handler: logging.Handler) -> None:
    logging.getLogger("localmaker").removeHandler(handler)
    handler.close()
