"""The ``localmaker`` command: demo, sweep, train, transform, up and its clients, pack, serve, examples,
contract-test and openapi."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from localmaker.cli import artifacts, contract, demo, endpoints, openapi, sweep, train, transform
from localmaker.cli.demo import DEMO_DOCUMENTS, DEMO_IMAGE_REQUEST, DEMO_PROMPT, DEMO_QUERY
from localmaker.errors import LocalmakerError
from localmaker.logging_setup import configure_logging

# In the order `localmaker --help` lists them.
COMMAND_GROUPS = (demo, sweep, train, transform, endpoints, artifacts, contract, openapi)


def _show_warning(message: warnings.WarningMessage | Warning | str, category: type[Warning], *_: object,
                  **__: object) -> None:
    print(f"[localmaker] warning: {message}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmaker", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(level=logging.INFO if args.verbose else logging.WARNING)
    warnings.showwarning = _show_warning
    try:
        return int(args.run(args))
    except LocalmakerError as exc:
        print(f"localmaker: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file that is missing or not writable, a server that cannot be reached
        print(f"localmaker: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):  # AWS said no: its message says why
            print(f"localmaker: error: {exc}", file=sys.stderr)
            return 2
        raise


__all__ = ["DEMO_DOCUMENTS", "DEMO_IMAGE_REQUEST", "DEMO_PROMPT", "DEMO_QUERY", "build_parser", "main"]
