"""The ``localmaker`` command: demo, pack, serve."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from localmaker.errors import LocalmakerError
from localmaker.logging_setup import configure_logging

DEMO_ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"
DEMO_QUERY = "Is ronaldo better than messi"
DEMO_DOCUMENTS = [
    "Ronaldo scores goals grater than messi",
    "Ronaldo Plays for portugal",
    "Leonardo messi plays soccer",
    "Aegentina won FIFA worldcup",
]


def _show_warning(message: warnings.WarningMessage | Warning | str, category: type[Warning], *_: object,
                  **__: object) -> None:
    print(f"[localmaker] warning: {message}", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.deserializers import JSONDeserializer
    from localmaker.deploy.serializers import JSONSerializer

    print(f"[localmaker] Packaging '{args.model}' and deploying it (first start loads the model)...", flush=True)
    with Session() as session:
        model = Model(model_data=args.model, role=DEMO_ROLE, sagemaker_session=session)
        with model.deploy(initial_instance_count=1, instance_type=args.instance_type,
                          serializer=JSONSerializer(), deserializer=JSONDeserializer()) as predictor:
            answer = predictor.predict({"query": DEMO_QUERY, "documents": DEMO_DOCUMENTS,
                                        "top_k": len(DEMO_DOCUMENTS)})
            print(f"\nQuery: {DEMO_QUERY}\n")
            for result in answer["results"]:
                print(f"#{result['rank']} (score={result['score']:.4f}) → {result['text']}")
            print()
        print("[localmaker] Endpoint deleted; every instance process has been stopped.")
    return 0


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
    extra = {"SAGEMAKER_MODEL_SERVER_WORKERS": str(args.workers)}
    if not (model_dir / "code" / os.environ.get("SAGEMAKER_PROGRAM", "inference.py")).is_file():
        extra["LOCALMAKER_CODE_DIR"] = str(CODE_DIR)  # a bare model dir is served with the built-in handlers
    env = instance_environment(model_dir, None, extra)
    command = gunicorn_command(f"{args.host}:{args.port}", env, None)
    print(f"[localmaker] serving {model_dir} at http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    os.execve(command[0], command, env)  # gunicorn takes over this process: signals reach it directly


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="localmaker", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="deploy the embedding model offline and run the seed's search")
    demo.add_argument("--model", default="minilm", help="model source (default: the bundled MiniLM)")
    demo.add_argument("--instance-type", default="ml.g5.xlarge")
    demo.set_defaults(run=run_demo)

    pack = commands.add_parser("pack", help="write a SageMaker-layout model.tar.gz")
    pack.add_argument("source", help="minilm, tiny-qwen3, a model directory, or a cached hub id")
    pack.add_argument("-o", "--output", default="model.tar.gz")
    pack.add_argument("--corpus", help="a corpus.jsonl or corpus.txt to search without sending documents")
    pack.add_argument("--source-dir", help="your own inference code (replaces the built-in handlers)")
    pack.add_argument("--entry-point", help="the script in --source-dir (default inference.py)")
    pack.set_defaults(run=run_pack)

    serve = commands.add_parser("serve", help="run one container in the foreground")
    serve.add_argument("model_dir", help="an unpacked model directory (or a named source)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(run=run_serve)
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
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
