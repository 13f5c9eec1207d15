"""SHA-256 helpers for model weights.

Weights are large (the bundled MiniLM is 88 MB), so files are hashed in chunks rather than read whole,
and a verified file is remembered per process: resolving the same source twice should not cost a
second full read. The memo is keyed by path, size and mtime so a file changed in place is re-hashed.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from localmaker.errors import ArtifactError

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20
# (resolved path, size, mtime_ns, expected digest) of files already verified in this process.
_verified: set[tuple[str, int, int, str]] = set()


def sha256_file(path: Path) -> str:
    """Return the hex SHA-256 of ``path``, streamed in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, *, hint: str = "") -> None:
    """Raise :class:`ArtifactError` unless ``path`` hashes to ``expected``.

    ``hint`` is appended to the error so the caller can say how to restore a good copy.
    """
    path = Path(path)
    expected = expected.lower()
    try:
        stat = path.stat()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path} to verify its sha256: {exc}. {hint}".rstrip()) from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, expected)
    if key in _verified:
        return
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactError(f"sha256 mismatch for {path}: expected {expected}, got {actual}. {hint}".rstrip())
    logger.debug("verified sha256 of %s", path)
    _verified.add(key)
