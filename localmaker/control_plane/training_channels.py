"""Brings a training job's input channels and code onto local disk, as SageMaker's File mode does."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localmaker.model.safe_tar import unpack
from localmaker.spec.s3_urls import parse_s3_url


class ChannelError(Exception):
    """A channel that cannot be made available; the message becomes the job's FailureReason."""


def fetch_channel(name: str, uri: str, destination: Path, s3: Any) -> Path:
    """Copy ``file://`` data or download every object under an ``s3://`` prefix into ``destination``."""
    destination.mkdir(parents=True, exist_ok=True)
    if uri.startswith("file://"):
        source = Path(urlparse(uri).path if uri.startswith("file:///") else uri.removeprefix("file://"))
        if not source.exists():
            raise ChannelError(f"channel '{name}': {source} does not exist; pass an existing folder as {uri!r}")
        if source.is_file():
            shutil.copy2(source, destination / source.name)
        else:
            shutil.copytree(source, destination, dirs_exist_ok=True)
    elif uri.startswith("s3://"):
        parsed = urlparse(uri)
        _download_prefix(s3, parsed.netloc, parsed.path.lstrip("/"), destination, name)
    else:
        raise ChannelError(f"channel '{name}': {uri!r} is neither s3://bucket/prefix nor file:///path")
    if not any(path.is_file() for path in destination.rglob("*")):
        raise ChannelError(f"channel '{name}' is empty: {uri} holds no files; upload the training data there")
    return destination


def _download_prefix(s3: Any, bucket: str, prefix: str, destination: Path, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                key = item["Key"]
                relative = key[len(prefix):].lstrip("/") if prefix else key
                if not relative or relative.endswith("/"):
                    continue
                target = (destination / relative).resolve()
                if not target.is_relative_to(destination.resolve()):
                    raise ChannelError(f"channel '{name}': object key {key!r} would escape the channel folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, key, str(target))
    except ClientError as exc:
        raise ChannelError(f"channel '{name}': cannot read s3://{bucket}/{prefix}: "
                           f"{exc.response['Error'].get('Message', exc)}") from exc


def fetch_code(submit_directory: str, destination: Path, s3: Any) -> Path:
    """Unpack the job's ``sourcedir.tar.gz`` (the SDK uploads it and names it in a hyperparameter)."""
    archive = destination.parent / "sourcedir.tar.gz"
    bucket, key = parse_s3_url(submit_directory)
    s3.download_file(bucket, key, str(archive))
    try:
        return unpack(archive, destination)
    finally:
        archive.unlink(missing_ok=True)
