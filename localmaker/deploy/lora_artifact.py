"""Recognises a LoRA training job's artifact and turns it into a servable model: the base plus the adapter.

train_lora.py writes only the adapter and ``localmaker_base_model.json`` naming its base, so the
artifact stays a few megabytes and holds no ``code/``: served as it is, the container finds no
inference.py. Wherever ``model_data`` is accepted, such an artifact is recognised by that reference file,
its base is resolved up front (a base that cannot be found fails when the Model is created, naming it),
and at deploy time the adapter is laid over the base, where the built-in handler's model_fn finds
``pytorch_lora_weights.safetensors`` and loads it.
"""

from __future__ import annotations

import json
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.archive_limits import DEFAULT_LIMITS
from localmaker.model.safe_tar import unpack
from localmaker.model.sources import resolve_source
from localmaker.model.tar_prescan import prescan
from localmaker.spec.names import LORA_BASE_MODEL_FILE, LORA_WEIGHTS_FILE

# An adapter-only artifact is megabytes (rank 4 on SD1.5: 3 MB; rank 128: about 100 MB). A larger archive
# is a full model, and reading it through only to look for the reference would double its load time.
PROBE_LIMIT_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class LoraArtifact:
    """The base model a LoRA artifact names, as written in it and as it resolved on this machine."""

    base_model: str
    base_dir: Path


def probe_archive(archive: Path, shown_as: str) -> LoraArtifact | None:
    """The artifact's base when ``archive`` is a LoRA job's model.tar.gz, else None (any other model)."""
    if archive.stat().st_size > PROBE_LIMIT_BYTES:
        return None
    # The header walk is bounded against hostile archives and reads no member data into memory.
    names = {posixpath.normpath(member.name) for member in prescan(archive, DEFAULT_LIMITS)}
    if LORA_BASE_MODEL_FILE not in names:
        return None
    with tempfile.TemporaryDirectory(prefix="localmaker-lora-probe-") as scratch:
        return _read_reference(unpack(archive, Path(scratch) / "trained"), shown_as)


def compose_lora_model(archive: Path, workspace: Path, shown_as: str) -> Path:
    """A model dir under ``workspace``: the base, linked file by file, with the artifact's files over it."""
    trained = unpack(archive, workspace / "trained")
    lora = _read_reference(trained, shown_as)
    served = workspace / "served"
    _link_tree(lora.base_dir, served)
    for path in sorted(trained.rglob("*")):
        if path.is_dir():
            continue
        target = served / path.relative_to(trained)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copy2(path, target)
    return served


def _read_reference(trained: Path, shown_as: str) -> LoraArtifact:
    reference = trained / LORA_BASE_MODEL_FILE
    try:
        base_model = json.loads(reference.read_text(encoding="utf-8"))["base_model"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{LORA_BASE_MODEL_FILE} in {shown_as} is unreadable ({exc}): it must be JSON "
                            'such as {"base_model": "tiny-sd"}') from None
    if not isinstance(base_model, str) or not base_model.strip():
        raise ArtifactError(f'{LORA_BASE_MODEL_FILE} in {shown_as} has no "base_model" string, so the LoRA '
                            "cannot be served: it names the Stable Diffusion pipeline the adapter was trained on")
    if not (trained / LORA_WEIGHTS_FILE).is_file():
        raise ArtifactError(f"{shown_as} names base model {base_model!r} in {LORA_BASE_MODEL_FILE} but holds no "
                            f"{LORA_WEIGHTS_FILE}: it is not a complete LoRA artifact")
    try:
        base_dir = resolve_source(base_model)
    except (ConfigurationError, ArtifactError) as exc:
        raise ConfigurationError(
            f"{shown_as} is a LoRA adapter for base model {base_model!r}, which cannot be found on this machine "
            f"({exc}). Make {base_model!r} resolvable here: a Stable Diffusion pipeline folder at that path, a "
            "named source (tiny-sd, sd15), or a hub id in the local Hugging Face cache; or retrain with the "
            "hyperparameter base_model set to one that is"
        ) from None
    return LoraArtifact(base_model=base_model, base_dir=base_dir)


def _link_tree(source: Path, destination: Path) -> None:
    """Mirror ``source`` with per-file symlinks: no copy of multi-GB weights, and packing follows them."""
    for folder, _dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            (destination / relative / name).symlink_to(Path(folder, name).resolve())
