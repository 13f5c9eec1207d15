"""Pack a model directory into a SageMaker-layout model.tar.gz.

The layout is the one SageMaker's PyTorch and Hugging Face containers expect, so the same archive
deploys unchanged to the cloud: the model's files at the archive root, the inference code under
``code/`` (``code/inference.py`` plus sibling modules and an optional ``requirements.txt``). A corpus
for the search demo rides along at the root as ``corpus.jsonl`` or ``corpus.txt``.

Archives are written to a temp file and renamed into place, so a reader never sees half an archive.
Member metadata is normalised (uid/gid 0, no user or group names, 0644/0755 modes) so an archive
does not leak who built it. Symlinks are stored as the files they point to: a Hugging Face cache
snapshot is a folder of symlinks into ``blobs/``, and the container needs the bytes. A symlinked
folder is stored as the folder's files, wherever it points, unless it points back to a folder that
contains it, which would never end.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.safe_tar import unpack
from localmaker.spec.names import CODE_FOLDER, DEFAULT_PROGRAM

logger = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".txt")
# Skipped at any depth: caches and VCS data are never part of a model.
SKIP_NAMES = frozenset({".localmaker-cache", "__pycache__", ".git", ".cache", ".DS_Store"})

# Measured on the bundled 88 MB MiniLM safetensors (2-core CPU): level 1 takes 2.0 s and keeps 91.9 %
# of the size, level 6 takes 2.7 s for 91.5 %, level 9 takes 3.0 s for 91.5 %. Float weights barely
# compress, so the higher levels cost time for almost no gain.
GZIP_LEVEL = 1


def builtin_code_dir() -> Path:
    """The folder of the ``localmaker.inference`` package, whose modules ship as ``code/``."""
    spec = importlib.util.find_spec("localmaker.inference")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ArtifactError("the built-in inference code (package localmaker.inference) is not installed")
    return Path(locations[0])


def _builtin_code_files(folder: Path) -> list[tuple[Path, str]]:
    """Every ``*.py`` but ``__init__.py`` (the code is loaded by file path, not as a package)."""
    files = [(p, p.name) for p in sorted(folder.glob("*.py")) if p.name != "__init__.py"]
    requirements = folder / "requirements.txt"
    if requirements.is_file():
        files.append((requirements, requirements.name))
    return files


def _walk(root: Path, *, skip_top: frozenset[str] = frozenset()) -> Iterator[tuple[Path, str]]:
    """Yield (path, archive-relative name) for files under ``root``, sorted, following file and folder
    symlinks (a model folder assembled from links, e.g. ``unet -> ../real/unet``, must not lose a part)."""
    # The resolved folders from root down to each folder still to visit: a link resolving to one of
    # them is a loop, which os.walk(followlinks=True) would follow until the path grew too long.
    ancestors: dict[str, tuple[Path, ...]] = {os.fspath(root): (root.resolve(),)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        chain = ancestors.pop(dirpath)
        rel_dir = Path(dirpath).relative_to(root)
        is_top = rel_dir == Path(".")
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES and not (is_top and d in skip_top))
        for name in dirnames:
            path = os.path.join(dirpath, name)
            real = Path(path).resolve()
            if real in chain:
                raise ArtifactError(
                    f"cannot pack {path}: it is a symlink to {real}, a folder that contains it, so packing it "
                    "would never end; remove the link or replace it with the files it should hold"
                )
            ancestors[path] = (*chain, real)
        for name in sorted(filenames):
            if name in SKIP_NAMES or (is_top and name in skip_top):
                continue
            yield Path(dirpath) / name, (rel_dir / name).as_posix()


def _check_entry_point(code_root: Path, entry_point: str) -> None:
    candidate = (code_root / entry_point).resolve()
    if not candidate.is_relative_to(code_root.resolve()) or not candidate.is_file():
        raise ConfigurationError(
            f"entry_point {entry_point!r} is not a file inside {code_root}; pass the script's path "
            f"relative to source_dir (for example 'inference.py')"
        )


def _code_files(
    model_dir: Path, code_dir: Path | None, entry_point: str | None, builtin: Path | None
) -> list[tuple[Path, str]]:
    """Pick the inference code: the user's source_dir, else the model's own code/, else the built-in."""
    entry = entry_point or DEFAULT_PROGRAM
    if code_dir is not None:
        code_dir = Path(code_dir)
        if not code_dir.is_dir():
            raise ConfigurationError(f"source_dir {code_dir} does not exist or is not a directory")
        _check_entry_point(code_dir, entry)
        return list(_walk(code_dir))
    own = model_dir / CODE_FOLDER
    if own.is_dir():
        logger.info("%s already carries code/; packing it as is", model_dir)
        _check_entry_point(own, entry)
        return list(_walk(own))
    folder = Path(builtin) if builtin is not None else builtin_code_dir()
    files = _builtin_code_files(folder) if folder.is_dir() else []
    if not any(name == entry for _, name in files):
        raise ArtifactError(f"the built-in inference code in {folder} has no {entry}")
    return files


def _corpus_member(corpus: Path | None) -> tuple[Path, str] | None:
    if corpus is None:
        return None
    corpus = Path(corpus)
    if corpus.suffix not in CORPUS_SUFFIXES:
        raise ConfigurationError(
            f"corpus {corpus} must be a .jsonl file (one JSON object per line) or a .txt file (one "
            f"document per line), not {corpus.suffix or 'a file without a suffix'}"
        )
    if not corpus.is_file():
        raise ConfigurationError(f"corpus {corpus} does not exist")
    return corpus, "corpus" + corpus.suffix


def _tarinfo(name: str, *, is_dir: bool, size: int = 0, mode: int = 0o644, mtime: float = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = size
    info.mode = 0o755 if is_dir or mode & stat.S_IXUSR else 0o644
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_archive(output: Path, members: list[tuple[Path, str]]) -> None:
    """Write ``members`` (source path, archive name) to ``output`` atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    tmp = Path(tmp_name)
    try:
        with (
            os.fdopen(fd, "wb") as raw,
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            written_dirs: set[str] = set()
            for source, name in members:
                missing = f"cannot pack {source}: it is missing or a broken symlink"
                try:
                    st = source.stat()  # follows symlinks: the bytes are what the container needs
                except FileNotFoundError as exc:
                    raise ArtifactError(missing) from exc
                except OSError as exc:  # a symlink to itself or a loop of links (ELOOP)
                    raise ArtifactError(f"cannot pack {source}: {exc.strerror}; fix or remove the link") from exc
                parts = name.split("/")[:-1]
                for i in range(1, len(parts) + 1):
                    directory = "/".join(parts[:i])
                    if directory not in written_dirs:
                        written_dirs.add(directory)
                        tar.addfile(_tarinfo(directory, is_dir=True, mtime=st.st_mtime))
                try:
                    with open(source, "rb") as fh:
                        info = _tarinfo(name, is_dir=False, size=st.st_size, mode=st.st_mode, mtime=st.st_mtime)
                        tar.addfile(info, fh)
                except FileNotFoundError as exc:  # removed between the stat and the open
                    raise ArtifactError(missing) from exc
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()


def _is_own_output(path: Path, output: Path) -> bool:
    """True for the archive being written (or its temp file) when ``output`` lies inside the model dir."""
    if path.parent.resolve() != output.parent.resolve():
        return False
    return path.name == output.name or path.name.startswith(f".{output.name}.")


def pack(
    model_dir: Path,
    output: Path,
    *,
    code_dir: Path | None = None,
    entry_point: str | None = None,
    corpus: Path | None = None,
    builtin_code: Path | None = None,
) -> Path:
    """Write ``model_dir`` as a SageMaker model.tar.gz at ``output`` and return ``output``.

    The code under ``code/`` is, in order of precedence: ``code_dir`` (the user's source_dir, copied
    recursively; its ``entry_point``, default ``inference.py``, must exist), the model dir's own
    ``code/`` if it has one, or the built-in ``localmaker.inference`` modules (``builtin_code``
    overrides where those are looked up, for tests).
    """
    model_dir, output = Path(model_dir), Path(output)
    if not model_dir.is_dir():
        raise ConfigurationError(f"model directory {model_dir} does not exist or is not a directory")
    code = _code_files(model_dir, code_dir, entry_point, builtin_code)
    corpus_member = _corpus_member(corpus)

    skip_top = {CODE_FOLDER}
    if corpus_member is not None:
        skip_top |= {"corpus" + suffix for suffix in CORPUS_SUFFIXES}
    members = [
        (path, name)
        for path, name in _walk(model_dir, skip_top=frozenset(skip_top))
        if not _is_own_output(path, output)
    ]
    if corpus_member is not None:
        members.append(corpus_member)
    members += [(path, f"{CODE_FOLDER}/{name}") for path, name in code]
    _write_archive(output, members)
    logger.info("packed %s (%d files) into %s", model_dir, len(members), output)
    return output


def pack_handler(script: str, output: Path, entry_point: str = DEFAULT_PROGRAM) -> Path:
    """A model.tar.gz holding only ``code/<entry_point>`` with ``script``: a handler that loads no weights
    (an echo or a stub), which starts in a fraction of the time a model does."""
    with tempfile.TemporaryDirectory(prefix="localmaker-handler-") as scratch:
        code = Path(scratch) / CODE_FOLDER
        code.mkdir()
        (code / entry_point).write_text(script, encoding="utf-8")
        return pack_directory(Path(scratch), output)


def pack_directory(folder: Path, output: Path) -> Path:
    """Archive exactly what ``folder`` holds, with nothing added: a training job's ``SM_MODEL_DIR``
    (SageMaker packs it as the job's model.tar.gz) or a ``sourcedir.tar.gz`` of training code."""
    folder, output = Path(folder), Path(output)
    if not folder.is_dir():
        raise ConfigurationError(f"{folder} does not exist or is not a directory")
    _write_archive(output, [(path, name) for path, name in _walk(folder) if not _is_own_output(path, output)])
    return output


def repack(archive: Path, output: Path, *, code_dir: Path, entry_point: str | None = None) -> Path:
    """Replace the ``code/`` of an existing model.tar.gz, as the SageMaker SDK does for a Model given
    ``entry_point`` and ``source_dir`` together with an existing ``model_data``.

    ``output`` may be ``archive`` itself: the new archive is renamed over it only once complete.
    """
    archive, output = Path(archive), Path(output)
    if not Path(code_dir).is_dir():
        raise ConfigurationError(f"source_dir {code_dir} does not exist or is not a directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".repack.", dir=output.parent) as tmp:
        model_dir = unpack(archive, Path(tmp) / "model")
        return pack(model_dir, output, code_dir=code_dir, entry_point=entry_point)
