"""Turns a LoRA training job's artifact into a servable model: the base pipeline plus the adapter.

train_lora.py writes only the adapter and ``localmaker_base_model.json`` naming its base, so the
artifact stays a few megabytes. Deploying it resolves that base and lays the adapter beside it, where
the handler's model_fn finds ``pytorch_lora_weights.safetensors`` and loads it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from localmaker.deploy.session import Session
from localmaker.errors import ArtifactError
from localmaker.model.safe_tar import unpack
from localmaker.model.sources import resolve_source
from localmaker.spec.names import LORA_BASE_MODEL_FILE, LORA_WEIGHTS_FILE
from localmaker.spec.s3_urls import parse_s3_url


def compose_lora_model(artifact_url: str, session: Session, workspace: Path) -> Path | None:
    """A model dir of base + adapter under ``workspace``, or None when the artifact is no LoRA job's."""
    archive = workspace / "trained.tar.gz"
    bucket, key = parse_s3_url(artifact_url)
    session.s3_client.download_file(bucket, key, str(archive))
    trained = unpack(archive, workspace / "trained")
    reference = trained / LORA_BASE_MODEL_FILE
    if not reference.is_file():
        return None
    try:
        base_spec = str(json.loads(reference.read_text())["base_model"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{LORA_BASE_MODEL_FILE} in {artifact_url} is unreadable: {exc}") from exc
    if not (trained / LORA_WEIGHTS_FILE).is_file():
        raise ArtifactError(f"{artifact_url} names a base model but holds no {LORA_WEIGHTS_FILE}")
    base = resolve_source(base_spec)
    served = workspace / "served"
    _link_tree(base, served)
    for name in (LORA_WEIGHTS_FILE, LORA_BASE_MODEL_FILE):
        target = served / name
        if target.exists() or target.is_symlink():
            target.unlink()
        shutil.copy2(trained / name, target)
    return served


def _link_tree(source: Path, destination: Path) -> None:
    """Mirror ``source`` with per-file symlinks: no copy of multi-GB weights, and packing follows them."""
    for folder, _dirs, files in os.walk(source):
        relative = Path(folder).relative_to(source)
        (destination / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            (destination / relative / name).symlink_to(Path(folder, name).resolve())
