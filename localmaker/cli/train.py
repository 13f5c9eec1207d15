"""`localmaker train` and `localmaker examples make-style-dataset`: a training job and data to train on."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from localmaker.cli.arguments import SEED, whole_number
from localmaker.cli.sessions import control_plane_url
from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE


def _hyperparameter(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE, e.g. learning_rate=1e-4")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value  # a bare string such as base_model=tiny-sd


def _channel(text: str) -> tuple[str, str]:
    name, separator, uri = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=URI, e.g. training=s3://bucket/data")
    return name, _as_uri(uri)


def _as_uri(location: str) -> str:
    return location if location.startswith(("s3://", "file://")) else f"file://{Path(location).resolve()}"


def run_train(args: argparse.Namespace) -> int:
    from localmaker.deploy import Estimator, Session

    channels = dict(args.channel or [])
    if args.data:
        channels["training"] = _as_uri(args.data)
    if not channels:
        raise ConfigurationError("give the training data: --data DIR|s3://... or --channel NAME=URI")
    url = control_plane_url(args)
    session = Session(endpoint_url=url) if url else Session()
    try:
        estimator = Estimator(entry_point=args.entry_point, source_dir=args.source_dir, role=PLACEHOLDER_ROLE,
                              instance_type=args.instance_type, hyperparameters=dict(args.hp or []),
                              output_path=args.output_path, sagemaker_session=session)
        estimator.fit(channels, job_name=args.job_name)
        assert estimator.model_data is not None
        print(f"model artifact: {estimator.model_data}")
        download = args.download or (None if url else f"{estimator.latest_training_job}-model.tar.gz")
        if download:
            bucket, key = estimator.model_data.removeprefix("s3://").split("/", 1)
            session.s3_client.download_file(bucket, key, download)
            print(f"downloaded to {Path(download).resolve()}")
    finally:
        session.close()
    return 0


def run_make_style_dataset(args: argparse.Namespace) -> int:
    from localmaker.model.builders.style_dataset import make_style_dataset

    folder = make_style_dataset(Path(args.directory), count=args.count, size=args.size, seed=args.seed)
    print(f"wrote {args.count} captioned images to {folder.resolve()}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser("train", help="run a training job locally (default: the LoRA fine-tune)")
    train.add_argument("--entry-point", default="train_lora.py", help="training script (default: built-in LoRA)")
    train.add_argument("--source-dir", help="folder holding --entry-point, for your own script")
    train.add_argument("--data", help="the 'training' channel: a folder, file:///path or s3://bucket/prefix")
    train.add_argument("--channel", action="append", type=_channel, metavar="NAME=URI", help="another channel")
    train.add_argument("--hp", action="append", type=_hyperparameter, metavar="KEY=VALUE",
                       help="a hyperparameter, e.g. --hp base_model=tiny-sd --hp max_train_steps=200")
    train.add_argument("--instance-type", default="ml.g5.2xlarge")
    train.add_argument("--output-path", help="s3:// prefix for the artifact (default: the default bucket)")
    train.add_argument("--job-name")
    train.add_argument("--endpoint-url", help="a running `localmaker up` (default: $AWS_ENDPOINT_URL, else embedded)")
    train.add_argument("--download", help="save model.tar.gz here (default with an embedded control plane: "
                                          "<job>-model.tar.gz, since its S3 ends with the command)")
    train.set_defaults(run=run_train)

    examples = commands.add_parser("examples", help="make example data").add_subparsers(dest="example", required=True)
    style = examples.add_parser("make-style-dataset", help="a small captioned neon-city style set for LoRA")
    style.add_argument("directory")
    style.add_argument("--count", type=whole_number(1), default=12)
    style.add_argument("--size", type=whole_number(16), default=64)
    style.add_argument("--seed", type=SEED, default=0)
    style.set_defaults(run=run_make_style_dataset)
