"""The ``localmaker`` command: demo, sweep, train, transform, up and its clients (deploy, update, describe,
endpoints, invoke, logs, delete), pack, serve, examples, contract-test and openapi."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence

from localmaker.cli import artifacts, contract, demo, deployments, endpoints, openapi, sweep, train, transform
from localmaker.cli.demo import DEMO_DOCUMENTS, DEMO_IMAGE_REQUEST, DEMO_PROMPT, DEMO_QUERY
from localmaker.cli.help_format import apply_help_format
from localmaker.errors import LocalmakerError
from localmaker.logging_setup import configure_logging

# In the order `localmaker --help` lists them.
COMMAND_GROUPS = (demo, sweep, train, transform, endpoints, deployments, artifacts, contract, openapi)

# Exit statuses, as argparse and most Unix tools use them: 2 is argparse's own for a command line it
# cannot parse, so a script can tell "I called it wrong" (2) from "it ran and failed" (1).
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


def _show_warning(message: warnings.WarningMessage | Warning | str, category: type[Warning], *_: object,
                  **__: object) -> None:
    print(f"[localmaker] warning: {message}", file=sys.stderr, flush=True)


def package_version() -> str:
    """The installed distribution's version; a source checkout that is not installed has only the module's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("localmaker")
    except PackageNotFoundError:
        import localmaker

        return str(getattr(localmaker, "__version__", "unknown"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmaker", description=__doc__)
    parser.add_argument("--version", action="version", version=f"localmaker {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.add_commands(commands)
    apply_help_format(parser)
    return parser


def _is_runtime_failure(exc: Exception) -> bool:
    """What a run can meet through no fault of its command line: refused by localmaker, by the file
    system or the network (a server that cannot be reached is a ConnectionError, an OSError), or by AWS."""
    if isinstance(exc, LocalmakerError | OSError):
        return True
    from botocore.exceptions import BotoCoreError, ClientError

    return isinstance(exc, ClientError | BotoCoreError)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)  # a usage error exits 2 here, with argparse's message
    configure_logging(level=logging.INFO if args.verbose else logging.WARNING)
    warnings.showwarning = _show_warning
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # the reader went away: not a failure to report (main handles it)
    except Exception as exc:
        if not _is_runtime_failure(exc):
            raise  # a bug in localmaker: its traceback is what a bug report needs
        print(f"localmaker: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not as a traceback at interpreter exit
    except BrokenPipeError:
        # `localmaker ... | head -1`: head has what it wanted and closed the pipe. As Python's docs advise
        # (library/signal, "Note on SIGPIPE"), point stdout at devnull so the exit flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


__all__ = ["DEMO_DOCUMENTS", "DEMO_IMAGE_REQUEST", "DEMO_PROMPT", "DEMO_QUERY", "build_parser", "main",
           "package_version"]
