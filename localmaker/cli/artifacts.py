"""`localmaker pack` and `localmaker serve`: a SageMaker-layout model.tar.gz, and one container to serve it."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from localmaker.cli.arguments import PORT, whole_number
from localmaker.cli.exposure import LOOPBACK, warn_if_exposed
from localmaker.errors import ConfigurationError
from localmaker.spec.names import CODE_FOLDER, DEFAULT_PROGRAM

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def run_pack(args: argparse.Namespace) -> int:
    from localmaker.model.artifact import pack
    from localmaker.model.sources import resolve_source

    code_dir = Path(args.source_dir) if args.source_dir else None
    corpus = Path(args.corpus) if args.corpus else None
    source = Path(args.source).expanduser()
    if source.is_file() and source.name.endswith(ARCHIVE_SUFFIXES):
        return _pack_archive(source, Path(args.output), code_dir, args.entry_point, corpus)
    output = pack(resolve_source(args.source), Path(args.output), code_dir=code_dir,
                  entry_point=args.entry_point, corpus=corpus)
    print(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB)")
    return 0


def _pack_archive(archive: Path, output: Path, code_dir: Path | None, entry_point: str | None,
                  corpus: Path | None) -> int:
    """A LoRA job's model.tar.gz becomes its base plus the adapter, servable by the built-in handler; any
    other archive is already packed, and the error says what to run instead."""
    from localmaker.deploy.lora_artifact import compose_lora_model, probe_archive
    from localmaker.model.artifact import pack

    if output.resolve() == archive.resolve():
        raise ConfigurationError(f"-o {output} is the archive itself: write the servable model elsewhere, "
                                 "e.g. -o served-model.tar.gz")
    lora = probe_archive(archive, str(archive))
    if lora is None:
        raise ConfigurationError(
            f"{archive} is already a model.tar.gz; pack takes a model directory or a named source. Deploy it as "
            f"it is with Model(model_data={str(archive)!r}, ...), add your code with Model(model_data=..., "
            "source_dir=..., entry_point=...), or serve it in one container: "
            f"mkdir model && tar -xzf {archive} -C model && localmaker serve model")
    with tempfile.TemporaryDirectory(prefix="localmaker-pack-") as scratch:
        served = compose_lora_model(archive, Path(scratch), str(archive))
        written = pack(served, output, code_dir=code_dir, entry_point=entry_point, corpus=corpus)
    print(f"wrote {written} ({written.stat().st_size / 1e6:.1f} MB): the LoRA adapter of {archive} on its base "
          f"{lora.base_model!r}, served by the built-in handler (lora_scale 0 is the base model)")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from localmaker.inference import CODE_DIR
    from localmaker.local_endpoint.launch import gunicorn_command, instance_environment
    from localmaker.model.sources import resolve_source

    given = Path(args.model_dir).expanduser()
    if given.is_file() and given.name.endswith(ARCHIVE_SUFFIXES):
        raise ConfigurationError(
            f"{given} is a model.tar.gz; serve takes an unpacked model directory: mkdir model && tar -xzf {given} "
            f"-C model && localmaker serve model (a LoRA job's artifact: localmaker pack {given} -o served.tar.gz "
            "first, then unpack that)")
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
    pack.add_argument("source", help="minilm, tiny-qwen3, tiny-sd, a model directory, a cached hub id, or a LoRA "
                                     "training job's model.tar.gz (packed on its base model)")
    pack.add_argument("-o", "--output", default="model.tar.gz", help="where to write the archive")
    pack.add_argument("--corpus", help="a corpus.jsonl or corpus.txt to search without sending documents "
                                       "(default: none)")
    pack.add_argument("--source-dir", help="your own inference code, replacing the built-in handlers "
                                           "(default: the built-in handlers)")
    pack.add_argument("--entry-point", help="the script in --source-dir (default: inference.py)")
    pack.set_defaults(run=run_pack)

    serve = commands.add_parser("serve", help="run one container in the foreground")
    serve.add_argument("model_dir", help="an unpacked model directory (or a named source)")
    serve.add_argument("--host", default=LOOPBACK, help="the address to bind; anything but loopback is warned about")
    serve.add_argument("--port", type=PORT, default=8080, help="the port to listen on, as a container's 8080")
    serve.add_argument("--workers", type=whole_number(1), default=1, help="gunicorn worker processes "
                                                                          "(SAGEMAKER_MODEL_SERVER_WORKERS)")
    serve.set_defaults(run=run_serve)
