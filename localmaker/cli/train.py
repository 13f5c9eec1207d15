"""`localmaker train` and `localmaker examples make-style-dataset`: a training job and data to train on."""

from __future__ import annotations

import argparse
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from localmaker.cli.arguments import SEED, whole_number
from localmaker.cli.sessions import control_plane_url
from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE

EXAMPLE_BASE = "tiny-sd"
# Measured on `examples make-style-dataset` data on a 2-core CPU (docs/reliability.md): the script's own
# defaults (learning_rate 1e-4, resolution 512) are diffusers' recipe for real SD1.5 and barely move tiny-sd.
REHEARSAL_DEFAULTS: dict[str, Any] = {"base_model": EXAMPLE_BASE, "resolution": 64, "learning_rate": 5e-3,
                                      "max_train_steps": 100}
METRICS_MEMBER = "training_metrics.json"


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


def builtin_hyperparameters(given: dict[str, Any]) -> dict[str, Any]:
    """The built-in script's hyperparameters: ``given`` over the rehearsal defaults when the base is tiny-sd
    (its own default); with another base, the script's own defaults, diffusers' recipe for real SD1.5."""
    if str(given.get("base_model", EXAMPLE_BASE)) != EXAMPLE_BASE:
        return dict(given)
    return {**REHEARSAL_DEFAULTS, **given}


def run_train(args: argparse.Namespace) -> int:
    from localmaker.deploy import Estimator, Session
    from localmaker.deploy.training_job import BUILTIN_SCRIPTS

    channels = dict(args.channel or [])
    if args.data:
        channels["training"] = _as_uri(args.data)
    if not channels:
        raise ConfigurationError("give the training data: --data DIR|s3://... or --channel NAME=URI")
    hyperparameters = dict(args.hp or [])
    builtin = args.entry_point in BUILTIN_SCRIPTS and args.source_dir is None
    if builtin:
        hyperparameters = builtin_hyperparameters(hyperparameters)
    url = control_plane_url(args)
    session = Session(endpoint_url=url) if url else Session()
    try:
        estimator = Estimator(entry_point=args.entry_point, source_dir=args.source_dir, role=PLACEHOLDER_ROLE,
                              instance_type=args.instance_type, hyperparameters=hyperparameters,
                              output_path=args.output_path, sagemaker_session=session)
        estimator.fit(channels, job_name=args.job_name)
        assert estimator.model_data is not None
        print(f"model artifact: {estimator.model_data}")
        if builtin:
            _print_losses(session, estimator.model_data)
        download = args.download or (None if url else f"{estimator.latest_training_job}-model.tar.gz")
        if download:
            bucket, key = estimator.model_data.removeprefix("s3://").split("/", 1)
            session.s3_client.download_file(bucket, key, download)
            print(f"downloaded to {Path(download).resolve()}")
        if builtin and download:
            print(f"deploy it: Model(model_data={download!r}, role=..., sagemaker_session=...).deploy("
                  "instance_type='ml.m5.xlarge'), or pack it on its base for `localmaker serve`: "
                  f"localmaker pack {download} -o served-model.tar.gz")
        elif builtin:
            print(f"deploy it: Estimator.attach({estimator.latest_training_job!r}, sagemaker_session=Session("
                  f"endpoint_url={url!r})).deploy(instance_type='ml.m5.xlarge'), or Model(model_data="
                  f"{estimator.model_data!r}, ...)")
    finally:
        session.close()
    return 0


def _print_losses(session: Any, model_data: str) -> None:
    """The built-in script's evaluation loss (fixed noise and timesteps) before and after training."""
    bucket, key = model_data.removeprefix("s3://").split("/", 1)
    try:
        body = session.s3_client.get_object(Bucket=bucket, Key=key.replace("model.tar.gz", "output.tar.gz"))
        with tarfile.open(fileobj=io.BytesIO(body["Body"].read())) as archive:
            member = archive.extractfile(METRICS_MEMBER)
            metrics = json.load(member) if member is not None else {}
        before, after = float(metrics["eval_loss_before"]), float(metrics["eval_loss_after"])
    except (ClientError, OSError, tarfile.TarError, KeyError, ValueError, TypeError):
        return  # no metrics to show: training itself succeeded
    print(f"evaluation loss: {before:.5f} before training, {after:.5f} after ({after / before:.2f}x)")


def run_make_style_dataset(args: argparse.Namespace) -> int:
    from localmaker.model.builders.style_dataset import make_style_dataset

    folder = make_style_dataset(Path(args.directory), count=args.count, size=args.size, seed=args.seed)
    print(f"wrote {args.count} captioned images to {folder.resolve()}")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rehearsal = " ".join(f"{key}={value}" for key, value in REHEARSAL_DEFAULTS.items())
    train = commands.add_parser("train", help="run a training job locally (default: the LoRA fine-tune)")
    train.add_argument("--entry-point", default="train_lora.py", help="training script; train_lora.py is built in")
    train.add_argument("--source-dir", help="folder holding --entry-point, for your own script "
                                            "(default: none, the built-in script)")
    train.add_argument("--data", help="the 'training' channel: a folder, file:///path or s3://bucket/prefix "
                                      "(required unless --channel gives the channels)")
    train.add_argument("--channel", action="append", type=_channel, metavar="NAME=URI",
                       help="another channel, repeatable (default: none)")
    train.add_argument("--hp", action="append", type=_hyperparameter, metavar="KEY=VALUE",
                       help=f"a hyperparameter, repeatable. The built-in script's defaults here: {rehearsal} "
                            "(the loss visibly falls on `examples make-style-dataset` data; about 1 s a step on a "
                            "2-core CPU); with another base_model, the script's own: resolution=512 learning_rate=1e-4 "
                            "max_train_steps=200, diffusers' LoRA recipe")
    train.add_argument("--instance-type", default="ml.g5.2xlarge", help="the training instance type it rehearses")
    train.add_argument("--output-path", help="s3:// prefix for the artifact (default: the default bucket)")
    train.add_argument("--job-name", help="the training job's name (default: train-lora-<timestamp>)")
    train.add_argument("--endpoint-url", help="a running `localmaker up` (default: $AWS_ENDPOINT_URL, else embedded)")
    train.add_argument("--download", help="save model.tar.gz here (default with an embedded control plane: "
                                          "<job>-model.tar.gz, since its S3 ends with the command)")
    train.set_defaults(run=run_train)

    examples = commands.add_parser("examples", help="make example data").add_subparsers(dest="example", required=True)
    style = examples.add_parser("make-style-dataset", help="a small captioned neon-city style set for LoRA")
    style.add_argument("directory", help="the folder to write the images and metadata.jsonl into")
    style.add_argument("--count", type=whole_number(1), default=12, help="how many captioned images")
    style.add_argument("--size", type=whole_number(16), default=64, help="the images' width and height in pixels")
    style.add_argument("--seed", type=SEED, default=0, help="the seed the images are drawn from (default: 0)")
    style.set_defaults(run=run_make_style_dataset)
