"""Handler configuration, done only by entry points (CLI, server processes), never on import; and how
localmaker's own output stays quiet and readable: model libraries silenced for its own calls, progress bars
that print plain lines where no terminal redraws them."""

from __future__ import annotations

import io
import logging
import logging.handlers
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

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


# ---------------------------------------------------------------------------------------------------
# Output of localmaker's own model-library calls, and progress bars that suit where stderr goes
# ---------------------------------------------------------------------------------------------------

# transformers 5 says this once per image-processor class when torchvision is missing. localmaker needs no
# torchvision (the PIL processors it falls back to are the ones SD1.5 containers use), so it is noise here.
_TORCHVISION_FALLBACK = "requires torchvision (not installed)"
_IMPORT_UTILS_LOGGER = "transformers.utils.import_utils"
# A progress display on a file or pipe writes a plain line at most this often (seconds).
PLAIN_PROGRESS_INTERVAL_S = 10.0


class _DropTorchvisionFallback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _TORCHVISION_FALLBACK not in record.getMessage()


@contextmanager
def quiet_model_libraries() -> Iterator[None]:
    """Silence transformers' and diffusers' progress bars ("Loading weights", "Writing model shards") and
    transformers' torchvision notice for the calls localmaker makes inside this block, then put the
    libraries back as they were: a user's own ``from_pretrained`` keeps its bars. The switches are the
    libraries' global ones, so a thread of the user's running meanwhile is quiet too, for that moment."""
    notice_filter = _DropTorchvisionFallback()
    import_logger = logging.getLogger(_IMPORT_UTILS_LOGGER)
    import_logger.addFilter(notice_filter)
    restore = [_silence(name) for name in ("transformers.utils.logging", "diffusers.utils.logging")]
    try:
        yield
    finally:
        import_logger.removeFilter(notice_filter)
        for put_back in reversed(restore):
            put_back()


def _silence(module_name: str) -> Callable[[], None]:
    """Turn one library's progress bars off; returns what turns them back on as they were (a library that
    is not installed has none). transformers' switch also flips huggingface_hub's, so that is put back too."""
    import importlib

    try:
        library = importlib.import_module(module_name)
        import huggingface_hub.utils as hub_utils
    except ImportError:
        return lambda: None
    was_on, hub_was_off = library.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled()
    library.disable_progress_bar()

    def put_back() -> None:
        if was_on:
            library.enable_progress_bar()
        if hub_was_off != hub_utils.are_progress_bars_disabled():
            (hub_utils.disable_progress_bars if hub_was_off else hub_utils.enable_progress_bars)()

    return put_back


class PlainLines(io.TextIOBase):
    """A stream for tqdm where no terminal redraws it: every redraw becomes one whole line, blank clears and
    repeats are dropped, so a log file or pipe shows ``desc: 40%|...| 4/10`` lines between the other lines,
    never ``\\r``-joined fragments."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._last = ""

    def write(self, text: str) -> int:
        for piece in text.replace("\r", "\n").split("\n"):
            line = piece.rstrip()
            if line and line != self._last:
                self._stream.write(line + "\n")
                self._last = line
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False


def progress_bar(*, file: TextIO | None = None, **options: Any) -> tqdm[Any]:
    """A tqdm bar on ``file`` (stderr by default): redrawn in place on a terminal; elsewhere (a file, a pipe,
    CI, pytest's capture) a plain line now and then (PLAIN_PROGRESS_INTERVAL_S) and one at the end."""
    from tqdm import tqdm

    stream = file if file is not None else sys.stderr
    if _is_terminal(stream):
        return tqdm(file=stream, **options)
    options.setdefault("mininterval", PLAIN_PROGRESS_INTERVAL_S)
    return tqdm(file=PlainLines(stream), dynamic_ncols=False, ncols=100, **options)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
