"""Where the handler keeps what it derives from the weights: corpus vectors and ONNX exports."""

from __future__ import annotations

import tempfile
from pathlib import Path

CACHE_DIR_NAME = ".localmaker-cache"


def cache_dirs(model_dir: Path, configured: Path | None) -> list[Path]:
    """Where to look for the cache, best first: the configured dir, the model's own (a model may ship its
    cache), then a temp dir. Entries are written to the first of them that is writable."""
    return [*([configured] if configured is not None else []), model_dir / CACHE_DIR_NAME,
            Path(tempfile.gettempdir()) / "localmaker-cache"]
