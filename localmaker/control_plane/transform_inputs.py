"""Which S3 objects a transform job reads, and where each one's answers go.

``S3Prefix`` takes every object whose key starts with the prefix; ``ManifestFile`` reads a manifest,
``[{"prefix": "s3://bucket/prefix/"}, "relative/key", ...]``, as SageMaker documents it. Each input's
answers go to ``<S3OutputPath>/<key relative to the prefix>.out``, so sub-folders under the prefix are
kept and two inputs never share an output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse


class InputError(Exception):
    """Input a job cannot read; the message (AWS's ClientError wording) becomes the job's FailureReason."""


@dataclass(frozen=True)
class InputFile:
    bucket: str
    key: str
    relative: str  # the key below the prefix, which names the output

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def list_inputs(s3: Any, data_type: str, uri: str) -> list[InputFile]:
    if data_type == "ManifestFile":
        return _manifest(s3, uri)
    bucket, prefix = bucket_and_prefix(uri)
    files = [InputFile(bucket, key, _relative(key, prefix)) for key in _keys(s3, bucket, prefix, uri)]
    if not files:
        raise InputError(f'ClientError: No S3 objects found under S3 URL "{uri}" given in input data source. '
                         f'Please ensure that the bucket exists in the selected region ({bucket!r}), that '
                         "objects exist under that S3 prefix, and that the role has \"s3:ListBucket\" "
                         f'permissions on bucket "{bucket}".')
    return files


def _relative(key: str, prefix: str) -> str:
    """The output name of ``key``: below the prefix's folder (an exact-object prefix keeps its file name)."""
    folder = prefix[:prefix.rfind("/") + 1]
    return key[len(folder):] if key.startswith(folder) else key.rsplit("/", 1)[-1]


def _keys(s3: Any, bucket: str, prefix: str, uri: str) -> list[str]:
    from botocore.exceptions import ClientError

    try:
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [item["Key"] for item in page.get("Contents", []) if not item["Key"].endswith("/")]
        return keys
    except ClientError as exc:
        raise InputError(f"ClientError: cannot list {uri}: {exc.response['Error'].get('Message', exc)}") from exc


def _manifest(s3: Any, uri: str) -> list[InputFile]:
    from botocore.exceptions import ClientError

    bucket, key = bucket_and_prefix(uri)
    try:
        entries = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ClientError as exc:
        raise InputError(f"ClientError: cannot read the manifest file {uri}: "
                         f"{exc.response['Error'].get('Message', exc)}") from exc
    except ValueError as exc:
        raise InputError(f"ClientError: the manifest file {uri} is not JSON: {exc}") from exc
    if (not isinstance(entries, list) or not entries or not isinstance(entries[0], dict)
            or "prefix" not in entries[0] or not all(isinstance(e, str) for e in entries[1:])):
        raise InputError(f'ClientError: the manifest file {uri} must be [{{"prefix": "s3://bucket/prefix/"}}, '
                         '"relative/key", ...]')
    base_bucket, base_prefix = bucket_and_prefix(str(entries[0]["prefix"]))
    files = [InputFile(base_bucket, base_prefix + name, name) for name in entries[1:]]
    if not files:
        raise InputError(f"ClientError: the manifest file {uri} lists no objects")
    return files


def output_location(output_path: str, item: InputFile) -> tuple[str, str]:
    """(bucket, key) of ``<S3OutputPath>/<relative input key>.out``."""
    bucket, prefix = bucket_and_prefix(output_path)
    prefix = prefix.rstrip("/")
    return bucket, f"{prefix}/{item.relative}.out" if prefix else f"{item.relative}.out"


def bucket_and_prefix(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` as (bucket, prefix); unlike an object URL, the prefix may be empty."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InputError(f"ClientError: {url!r} is not an S3 URL; expected s3://bucket/prefix")
    return parsed.netloc, parsed.path.lstrip("/")
