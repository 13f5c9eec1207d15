"""`localmaker transform`: a batch transform job over local files or an S3 prefix, with a progress bar over records.

Local input is uploaded to the session's default bucket first, and a local ``--output`` folder gets the
``<file>.out`` objects downloaded into it once the job has completed, so that the command works against
an embedded control plane, whose S3 ends with the command, as well as against `localmaker up`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from localmaker.cli.arguments import key_value, whole_number
from localmaker.cli.sessions import control_plane_url
from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE

CONTENT_TYPES = {".jsonl": "application/jsonlines", ".json": "application/json", ".csv": "text/csv"}


def _upload_input(session: Any, location: str, job_name: str) -> str:
    """An s3:// prefix as it is; a local file or folder uploaded under ``<bucket>/<job>/input/``."""
    if location.startswith("s3://"):
        return location
    source = Path(location)
    if not source.exists():
        raise ConfigurationError(f"--input {location} does not exist; give a file, a folder or s3://bucket/prefix")
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    if not files:
        raise ConfigurationError(f"--input {location} holds no files")
    bucket = session.default_bucket()
    for path in files:
        relative = path.name if source.is_file() else path.relative_to(source).as_posix()
        session.s3_client.upload_file(str(path), bucket, f"{job_name}/input/{relative}")
    return f"s3://{bucket}/{job_name}/input/"


def _content_type(args: argparse.Namespace) -> str | None:
    if args.content_type:
        return str(args.content_type)
    if args.input.startswith("s3://"):
        return None
    source = Path(args.input)
    suffixes = [source.suffix] if source.is_file() else [p.suffix for p in source.rglob("*") if p.is_file()]
    found = {CONTENT_TYPES[s] for s in suffixes if s in CONTENT_TYPES}
    return found.pop() if len(found) == 1 else None


def _download_outputs(session: Any, output_path: str, folder: Path) -> list[Path]:
    bucket, _, prefix = output_path.removeprefix("s3://").partition("/")
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    written = []
    for page in session.s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            target = folder / item["Key"][len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            session.s3_client.download_file(bucket, item["Key"], str(target))
            written.append(target)
    return written


def run_transform(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.transformer import Transformer

    url = control_plane_url(args)
    session = Session(endpoint_url=url) if url else Session()
    try:
        job_name = args.job_name or f"transform-{time.strftime('%Y%m%d-%H%M%S')}"
        data = _upload_input(session, args.input, job_name)
        local_output = None if args.output.startswith("s3://") else Path(args.output)
        output_path = args.output if local_output is None else f"s3://{session.default_bucket()}/{job_name}/output"
        options: dict[str, Any] = {
            "strategy": args.strategy, "assemble_with": args.assemble_with, "output_path": output_path,
            "accept": args.accept, "max_concurrent_transforms": args.max_concurrent_transforms,
            "max_payload": args.max_payload, "env": dict(args.env or [])}
        if args.model_name:
            transformer = Transformer(args.model_name, args.instance_count, args.instance_type,
                                      sagemaker_session=session, **options)
        else:
            model = Model(model_data=args.model, role=PLACEHOLDER_ROLE, entry_point=args.entry_point,
                          source_dir=args.source_dir, sagemaker_session=session)
            transformer = model.transformer(args.instance_count, args.instance_type, **options)
        transformer.transform(data, content_type=_content_type(args), split_type=args.split_type,
                              compression_type=args.compression_type, job_name=job_name,
                              input_filter=args.input_filter, output_filter=args.output_filter,
                              join_source=args.join_source, progress=True)
        print(f"transform job {job_name}: Completed; output in {output_path}")
        if local_output is not None:
            for path in _download_outputs(session, output_path, local_output):
                print(f"wrote {path}")
    finally:
        session.close()
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transform = commands.add_parser("transform", help="run a batch transform job over files (progress over records)")
    model = transform.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="model data: minilm, tiny-qwen3, a model dir, a model.tar.gz or s3://")
    model.add_argument("--model-name", help="a SageMaker model that already exists on --endpoint-url")
    transform.add_argument("--entry-point", help="your inference script (with --source-dir)")
    transform.add_argument("--source-dir", help="folder holding --entry-point")
    transform.add_argument("--input", required=True, help="a file, a folder, or s3://bucket/prefix")
    transform.add_argument("--output", required=True, help="a folder for the <file>.out answers, or s3://bucket/prefix")
    transform.add_argument("--content-type", help="the input's ContentType (default: from the file suffix)")
    transform.add_argument("--accept", help="the Accept header of each request")
    transform.add_argument("--split-type", default="Line", choices=("None", "Line", "RecordIO", "TFRecord"),
                           help="how an input file is cut into records (SplitType)")
    transform.add_argument("--compression-type", choices=("None", "Gzip"),
                           help="Gzip when the input files are gzipped (default: None)")
    transform.add_argument("--strategy", default="MultiRecord", choices=("MultiRecord", "SingleRecord"),
                           help="records per request: as many as fit --max-payload, or one (BatchStrategy)")
    transform.add_argument("--assemble-with", default="Line", choices=("None", "Line"),
                           help="how the answers of one file are joined in its .out (AssembleWith)")
    transform.add_argument("--max-payload", type=whole_number(0, 100), help="MaxPayloadInMB (default 6)")
    transform.add_argument("--max-concurrent-transforms", type=whole_number(1), help="requests in flight per "
                                                                                      "instance (default 1)")
    transform.add_argument("--instance-count", type=whole_number(1), default=1, help="instances that share the files")
    transform.add_argument("--instance-type", default="ml.m5.xlarge", help="the SageMaker instance type simulated")
    transform.add_argument("--input-filter", help="JSONPath, e.g. '$[1:]' or '$.features'")
    transform.add_argument("--output-filter", help="JSONPath, e.g. '$[0,-1]' or \"$['id','SageMakerOutput']\"")
    transform.add_argument("--join-source", choices=("Input", "None"),
                           help="Input puts each input record beside its answer (default: None)")
    transform.add_argument("--env", action="append", type=key_value, metavar="KEY=VALUE",
                           help="an Environment variable of the job")
    transform.add_argument("--job-name", help="the transform job's name (default: transform-<date>-<time>)")
    transform.add_argument("--endpoint-url", help="a running `localmaker up` (default: $AWS_ENDPOINT_URL, "
                                                  "else embedded)")
    transform.set_defaults(run=run_transform)
