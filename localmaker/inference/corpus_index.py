"""The document corpus packed next to the model, embedded once and cached on disk.

A search endpoint with a built-in corpus must not re-embed thousands of documents on every start, so
the vectors are saved as ``.npy`` under a key that changes whenever anything that shapes them changes:
the corpus bytes, the model (config and weight files), pooling, truncation length and dtype. The cache
is plain float32 arrays (``allow_pickle=False``), so a tampered cache cannot run code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cache_folders import cache_dirs
from embedding_model import EmbeddingModel
from embedding_pooling import l2_normalize
from serving_errors import ModelLoadError

logger = logging.getLogger(__name__)

CORPUS_FILES = ("corpus.jsonl", "corpus.txt")
_CACHE_FORMAT = "corpus-v1"

DocumentId = str | int


@dataclass(frozen=True)
class Corpus:
    """Documents in file order, with their ids when the corpus gives them."""

    texts: list[str]
    ids: list[DocumentId | None]
    source: Path
    raw: bytes


@dataclass(frozen=True)
class CorpusIndex:
    """Unit-length document vectors, row ``i`` for ``texts[i]``."""

    texts: list[str]
    ids: list[DocumentId | None]
    vectors: np.ndarray
    cache_path: Path | None
    loaded_from_cache: bool


def find_corpus_file(model_dir: Path) -> Path | None:
    for name in CORPUS_FILES:
        if (model_dir / name).is_file():
            return model_dir / name
    return None


def _parse_jsonl(path: Path, raw: bytes) -> tuple[list[str], list[DocumentId | None]]:
    texts: list[str] = []
    ids: list[DocumentId | None] = []
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ModelLoadError(f"{path} line {number} is not JSON ({exc}): write one JSON object per line.") from exc
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str) or not text:
            raise ModelLoadError(
                f'{path} line {number} needs a non-empty string "text" field: '
                'write e.g. {"id": "doc-1", "text": "..."}.'
            )
        doc_id = record.get("id")
        if doc_id is not None and (isinstance(doc_id, bool) or not isinstance(doc_id, (str, int))):
            raise ModelLoadError(f'{path} line {number}: "id" must be a string or an integer when present.')
        texts.append(text)
        ids.append(doc_id)
    return texts, ids


def load_corpus(path: Path) -> Corpus:
    """Read ``corpus.jsonl`` (objects with "text" and optional "id") or ``corpus.txt`` (a line each)."""
    raw = path.read_bytes()
    try:
        if path.suffix == ".jsonl":
            texts, ids = _parse_jsonl(path, raw)
        else:
            texts = [line for line in raw.decode("utf-8").splitlines() if line.strip()]
            ids = [None] * len(texts)
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path} is not UTF-8 ({exc}): re-save it as UTF-8.") from exc
    if not texts:
        raise ModelLoadError(f"{path} holds no documents: add at least one, or remove the file.")
    return Corpus(texts=texts, ids=ids, source=path, raw=raw)


def cache_key(corpus: Corpus, model: EmbeddingModel) -> str:
    """Content hash of everything that determines the corpus vectors."""
    digest = hashlib.sha256()
    for part in (
        _CACHE_FORMAT,
        corpus.source.name,
        model.fingerprint,
        model.layout.pooling,
        str(model.layout.include_prompt),
        str(model.max_length),
        str(model.dtype),
    ):
        digest.update(part.encode() + b"\0")
    digest.update(corpus.raw)
    return digest.hexdigest()


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError:
        return False
    return True


def _load_cached(path: Path, expected_rows: int, dimension: int) -> np.ndarray | None:
    try:
        vectors: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable corpus cache %s: %s", path, exc)
        return None
    if vectors.shape != (expected_rows, dimension) or vectors.dtype != np.float32:
        logger.warning("ignoring corpus cache %s with shape %s", path, vectors.shape)
        return None
    return vectors


def _save(directory: Path, name: str, vectors: np.ndarray) -> Path:
    fd, tmp_name = tempfile.mkstemp(dir=directory, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, vectors, allow_pickle=False)
        os.replace(tmp_name, directory / name)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return directory / name


def build_index(corpus: Corpus, model: EmbeddingModel, model_dir: Path, cache_dir: Path | None) -> CorpusIndex:
    """Load the corpus vectors from the cache, or embed the corpus and cache them."""
    name = f"{cache_key(corpus, model)}.npy"
    dirs = cache_dirs(model_dir, cache_dir)
    for directory in dirs:
        candidate = directory / name
        if candidate.is_file():
            vectors = _load_cached(candidate, len(corpus.texts), model.dimension)
            if vectors is not None:
                logger.info("loaded %d corpus embeddings from cache %s", len(corpus.texts), candidate)
                return CorpusIndex(corpus.texts, corpus.ids, vectors, candidate, loaded_from_cache=True)

    logger.info("embedding corpus %s (%d documents)", corpus.source, len(corpus.texts))
    vectors = l2_normalize(model.embed(corpus.texts, show_progress=True).vectors).astype(np.float32)
    saved: Path | None = None
    for directory in dirs:
        if _writable(directory):
            saved = _save(directory, name, vectors)
            logger.info("cached corpus embeddings in %s", saved)
            break
    else:
        logger.warning("no writable cache directory among %s; the corpus will be re-embedded next start", dirs)
    return CorpusIndex(corpus.texts, corpus.ids, vectors, saved, loaded_from_cache=False)
