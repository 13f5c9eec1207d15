"""s3://bucket/key parsing, with an error that says what a valid URL looks like."""

from __future__ import annotations

from urllib.parse import urlparse

from localmaker.errors import ConfigurationError


def parse_s3_url(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ConfigurationError(f"{url!r} is not an S3 object URL; expected s3://bucket/path/model.tar.gz")
    return parsed.netloc, parsed.path.lstrip("/")
