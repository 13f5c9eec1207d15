"""`localmaker openapi`: write the container API's OpenAPI document (also served at GET /openapi.json)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def run_openapi(args: argparse.Namespace) -> int:
    from localmaker.local_endpoint.openapi_document import OPENAPI_VERSION, openapi_document

    text = json.dumps(openapi_document(), indent=2) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"wrote {args.output}: OpenAPI {OPENAPI_VERSION} for GET /ping, POST /invocations and GET /openapi.json")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    openapi = commands.add_parser("openapi", help="write the container API as an OpenAPI document")
    openapi.add_argument("-o", "--output", default="openapi.json", help="where to write it; - for stdout")
    openapi.set_defaults(run=run_openapi)
