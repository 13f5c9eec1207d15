"""How commands reach a control plane: attaching to `localmaker up`, or starting their own."""

from __future__ import annotations

import argparse
import os
from typing import Any

from localmaker.errors import ConfigurationError


def control_plane_url(args: argparse.Namespace) -> str | None:
    """``--endpoint-url``, else ``$AWS_ENDPOINT_URL`` (what `localmaker up` tells the user to export)."""
    return args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")


def attached_session(args: argparse.Namespace) -> Any:
    from localmaker.deploy import Session

    url = control_plane_url(args)
    if not url:
        raise ConfigurationError("no control plane to talk to: start `localmaker up` and pass --endpoint-url "
                                 "or set AWS_ENDPOINT_URL to the address it printed")
    return Session(endpoint_url=url)


def add_endpoint_url_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", metavar="URL",
                        help="the control plane that `localmaker up` printed (default: $AWS_ENDPOINT_URL)")
