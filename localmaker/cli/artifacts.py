"""`localmaker pack` and `localmaker serve`: a SageMaker-layout model.tar.gz, and one container to serve it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from localmaker.cli.arguments import PORT, whole_number
from localmaker.cli.exposure import LOOPBACK, warn_if_exposed
from localmaker.spec.names import CODE_FOLDER, DEFAULT_PROGRAM


def run_pack(args: argparse.Namespace) -> int:
    from localmaker.model.artifact import pack
    from localmaker.model.sources import resolve_source

    output = pack(resolve_source(args.source), Path(args.output),
                  code_dir=Path(args.source_dir) if args.source_dir else None,
                  entry_point=args.entry_point, corpus=Path(args.corpus) if args.corpus else None)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from localmaker.inference import CODE_DIR
    from localmaker.local_endpoint.launch import gunicorn_command, instance_environment
    from localmaker.model.sources import resolve_source

    model_dir = resolve_source(args.model_dir)
    extra = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(args.workers), "LOCALMAKER_BIND_HOST": args.host}
    if not (model_dir / CODE_FOLDER / os.environ.get("SAGEMAKER_PROGRAM", DEFAULT_PROGRAM)).is_file():
        extra["LOCALMAKER_CODE_DIR"] = str(CODE_DIR)  # a bare model dir is served with the built-in handlers
    env = instance_environment(model_dir, None, extra)
    warn_if_exposed(args.host, f"the container serving {model_dir}")
    # gunicorn's --bind, like a URL, needs an IPv6 literal in brackets to tell it from the port.
    address = f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}"
    command = gunicorn_command(address, env, None)
    print(f"[localmaker] serving {model_dir} at http://{address} (Ctrl-C stops it)", flush=True)
    os.execve(command[0], command, env)  # gunicorn takes over this process: signals reach it directly


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pack = commands.add_parser("pack", help="write a SageMaker-layout model.tar.gz")
    pack.add_argument("source", help="minilm, tiny-qwen3, a model directory, or a cached hub id")
    pack.add_argument("-o", "--output", default="model.tar.gz")
    pack.add_argument("--corpus", help="a corpus.jsonl or corpus.txt to search without sending documents")
    pack.add_argument("--source-dir", help="your own inference code (replaces the built-in handlers)")
    pack.add_argument("--entry-point", help="the script in --source-dir (default inference.py)")
    pack.set_defaults(run=run_pack)

    serve = commands.add_parser("serve", help="run one container in the foreground")
    serve.add_argument("model_dir", help="an unpacked model directory (or a named source)")
    serve.add_argument("--host", default=LOOPBACK, help="the address to bind; anything but loopback is warned about")
    serve.add_argument("--port", type=PORT, default=8080)
    serve.add_argument("--workers", type=whole_number(1), default=1)
    serve.set_defaults(run=run_serve)
