"""Brings a training job's input channels and code onto local disk, as SageMaker's File mode does.

With a ``DiskBudget``, the bytes a channel or the code will take are counted before the first one is
written (an S3 listing carries each object's size, a local folder its files'), so a dataset larger than the
control plane's disk cap fails the job at once, with nothing downloaded.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from localmaker.control_plane.api_errors import ResourceLimitExceeded
from localmaker.control_plane.disk_budget import DiskBudget
from localmaker.model.safe_tar import unpack
from localmaker.spec.s3_urls import parse_s3_url


class ChannelError(Exception):
    """A channel that cannot be made available; the message becomes the job's FailureReason."""


def fetch_channel(name: str, uri: str, destination: Path, s3: Any, disk: DiskBudget | None = None) -> Path:
    """Copy ``file://`` data or download every object under an ``s3://`` prefix into ``destination``, once
    ``disk`` (where given) has room for all of it."""
    destination.mkdir(parents=True, exist_ok=True)
    if uri.startswith("file://"):
        source = Path(urlparse(uri).path if uri.startswith("file:///") else uri.removeprefix("file://"))
        if not source.exists():
            raise ChannelError(f"channel '{name}': {source} does not exist; pass an existing folder as {uri!r}")
        if disk is not None:
            _check_room(disk, f"channel '{name}'", uri, *_local_size(source))
        if source.is_file():
            shutil.copy2(source, destination / source.name)
        else:
            shutil.copytree(source, destination, dirs_exist_ok=True)
    elif uri.startswith("s3://"):
        parsed = urlparse(uri)
        _download_prefix(s3, parsed.netloc, parsed.path.lstrip("/"), destination, name, disk)
    else:
        raise ChannelError(f"channel '{name}': {uri!r} is neither s3://bucket/prefix nor file:///path")
    if not any(path.is_file() for path in destination.rglob("*")):
        raise ChannelError(f"channel '{name}' is empty: {uri} holds no files; upload the training data there")
    return destination


def _download_prefix(s3: Any, bucket: str, prefix: str, destination: Path, name: str,
                     disk: DiskBudget | None) -> None:
    from botocore.exceptions import ClientError

    try:
        counted = 0
        if disk is not None:  # a first listing counts, so that a channel that cannot fit downloads nothing
            objects = 0
            for item in _objects(s3, bucket, prefix):
                counted += int(item.get("Size", 0))
                objects += 1
            _check_room(disk, f"channel '{name}'", f"s3://{bucket}/{prefix}", counted, objects)
        listed = 0
        for item in _objects(s3, bucket, prefix):
            key = item["Key"]
            relative = key[len(prefix):].lstrip("/") if prefix else key
            if not relative or relative.endswith("/"):
                continue
            target = (destination / relative).resolve()
            if not target.is_relative_to(destination.resolve()):
                raise ChannelError(f"channel '{name}': object key {key!r} would escape the channel folder")
            listed += int(item.get("Size", 0))
            if disk is not None and listed > counted:  # uploaded after the count: it needs room of its own
                _check_room(disk, f"channel '{name}'", f"s3://{bucket}/{key}", int(item.get("Size", 0)), 1)
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
    except ClientError as exc:
        raise ChannelError(f"channel '{name}': cannot read s3://{bucket}/{prefix}: "
                           f"{exc.response['Error'].get('Message', exc)}") from exc


def _objects(s3: Any, bucket: str, prefix: str) -> Iterator[dict[str, Any]]:
    """Each object under the prefix, page by page: a listing of millions of keys is never held whole."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])


def _local_size(source: Path) -> tuple[int, int]:
    """Bytes and files a ``file://`` channel will copy (symlinks count as what they point to, as copied)."""
    if source.is_file():
        return source.stat().st_size, 1
    total = count = 0
    for folder, _dirs, files in os.walk(source):
        for file in files:
            try:
                total += os.stat(os.path.join(folder, file)).st_size
                count += 1
            except OSError:  # a dangling link: copytree fails on it, with its own message
                continue
    return total, count


def _check_room(disk: DiskBudget, what: str, uri: str, incoming: int, objects: int) -> None:
    try:
        disk.check_room(f"{what} ({uri}, {objects:,} object{'' if objects == 1 else 's'})", incoming)
    except ResourceLimitExceeded as exc:
        raise ChannelError(f"{what} cannot be downloaded: {exc.message}") from None


def fetch_code(submit_directory: str, destination: Path, s3: Any, disk: DiskBudget | None = None) -> Path:
    """Unpack the job's ``sourcedir.tar.gz`` (the SDK uploads it and names it in a hyperparameter)."""
    archive = destination.parent / "sourcedir.tar.gz"
    bucket, key = parse_s3_url(submit_directory)
    if disk is not None:
        size = int(s3.head_object(Bucket=bucket, Key=key).get("ContentLength", 0))
        _check_room(disk, "the source directory", submit_directory, size, 1)
    s3.download_file(bucket, key, str(archive))
    try:
        return unpack(archive, destination)
    finally:
        archive.unlink(missing_ok=True)
