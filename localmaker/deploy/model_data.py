"""Turns ``model_data`` (a named source, a directory, a hub id, or a model.tar.gz) into an S3 artifact.

Where it can, it checks up front that the artifact exists, so a typo fails before anything starts. A LoRA
training job's artifact (adapter only) is recognised here, so every route that takes ``model_data`` serves
it on its base (lora_artifact.py).
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import ClientError

from localmaker.deploy.lora_artifact import PROBE_LIMIT_BYTES, LoraArtifact, compose_lora_model, probe_archive
from localmaker.deploy.session import Session
from localmaker.errors import ConfigurationError
from localmaker.model.artifact import pack, repack
from localmaker.model.sources import resolve_source
from localmaker.spec.names import DEFAULT_PROGRAM
from localmaker.spec.s3_urls import parse_s3_url


@dataclass(frozen=True)
class ModelData:
    """Where the artifact comes from; ``archive`` is a local model.tar.gz, ``source`` a model dir."""

    s3_url: str | None = None
    archive: Path | None = None
    source_dir: Path | None = None
    label: str = "model"
    lora: LoraArtifact | None = None  # set when the archive is a LoRA job's adapter, served on this base


def locate(model_data: str | Path, session: Session) -> ModelData:
    spec = str(model_data)
    if spec.startswith("s3://"):
        bucket, key = parse_s3_url(spec)
        try:
            head = session.s3_client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) == "403":
                raise ConfigurationError(f"model_data {spec!r} cannot be read with this session's credentials "
                                         "(403): grant s3:GetObject on it, or copy it to your own bucket") from None
            raise ConfigurationError(
                f"model_data {spec!r} does not exist in S3; upload it first "
                "(session.upload_file) or pass a local model.tar.gz"
            ) from None
        lora = _probe_s3(spec, int(head.get("ContentLength", 0)), session)
        return ModelData(s3_url=spec, label=_label(key), lora=lora)
    if spec.startswith("file://"):
        spec = spec.removeprefix("file://")
        if not Path(spec).is_file():
            raise ConfigurationError(f"model_data file://{spec} does not exist")
    path = Path(spec).expanduser()
    if path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise ConfigurationError(f"model_data {spec!r} is a file but not a model.tar.gz")
        return ModelData(archive=path, label=_label(path.name), lora=probe_archive(path, spec))
    return ModelData(source_dir=resolve_source(spec), label=_label(spec))


def stage(data: ModelData, session: Session, key_prefix: str, entry_point: str | None = None,
          source_dir: Path | None = None, corpus: Path | None = None) -> str:
    """Pack or repack as needed, upload to the session's default bucket, and return the artifact's S3 URL.

    As the SageMaker SDK does, a given ``source_dir`` replaces the artifact's ``code/`` folder.
    """
    if data.s3_url and source_dir is None and corpus is None and data.lora is None:
        return data.s3_url
    # Everything staged, a composed LoRA model included, lives here only until the upload is done.
    with tempfile.TemporaryDirectory(prefix="localmaker-stage-") as scratch:
        scratch_dir = Path(scratch)
        if data.lora is not None:
            trained = data.archive or _download(str(data.s3_url), session, scratch_dir / "trained.tar.gz")
            served = compose_lora_model(trained, scratch_dir / "lora", str(data.archive or data.s3_url))
            artifact = scratch_dir / "model.tar.gz"
            pack(served, artifact, code_dir=source_dir, entry_point=entry_point, corpus=corpus)
        elif data.source_dir is not None:
            artifact = scratch_dir / "model.tar.gz"
            pack(data.source_dir, artifact, code_dir=source_dir, entry_point=entry_point, corpus=corpus)
        else:
            if corpus is not None:
                raise ConfigurationError("corpus can only be packed with a model directory or named source, "
                                         "not added to an existing model.tar.gz")
            artifact = data.archive or _download(str(data.s3_url), session, scratch_dir / "original.tar.gz")
            if source_dir is not None:
                repacked = scratch_dir / "model.tar.gz"
                repack(artifact, repacked, code_dir=source_dir, entry_point=entry_point or DEFAULT_PROGRAM)
                artifact = repacked
        return session.upload_file(artifact, f"{key_prefix}/model.tar.gz")


def _probe_s3(s3_url: str, size: int, session: Session) -> LoraArtifact | None:
    """Look inside an S3 artifact small enough to be an adapter; a larger one is served as it is."""
    if size > PROBE_LIMIT_BYTES:
        return None
    with tempfile.TemporaryDirectory(prefix="localmaker-probe-") as scratch:
        return probe_archive(_download(s3_url, session, Path(scratch) / "model.tar.gz"), s3_url)


def _download(s3_url: str, session: Session, destination: Path) -> Path:
    bucket, key = parse_s3_url(s3_url)
    session.s3_client.download_file(bucket, key, str(destination))
    return destination


def _label(text: str) -> str:
    stem = Path(text.rstrip("/")).name.removesuffix(".tar.gz").removesuffix(".tgz").removesuffix(".tar")
    if stem == "model":
        stem = Path(text.rstrip("/")).parent.name or "model"
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", stem).strip("-").lower()
    return cleaned[:24] or "model"
