"""The ``localmaker`` command: demo, sweep, train, up and its clients, pack, serve, examples."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from localmaker.errors import ConfigurationError, LocalmakerError
from localmaker.logging_setup import configure_logging

DEMO_ROLE = "arn:aws:iam::111122223333:role/SageMakerRole"
DEMO_QUERY = "Is ronaldo better than messi"
DEMO_DOCUMENTS = [
    "Ronaldo scores goals grater than messi",
    "Ronaldo Plays for portugal",
    "Leonardo messi plays soccer",
    "Aegentina won FIFA worldcup",
]
DEMO_PROMPT = "Astronaut in a jungle, cold color palette, muted colors, detailed, 8k"
DEMO_IMAGE_REQUEST = {
    "inputs": DEMO_PROMPT,
    "parameters": {"negative_prompt": "blurry, low quality, distorted, watermark",
                   "guidance_scale": 7.5, "num_inference_steps": 30, "seed": 42},
}


def _show_warning(message: warnings.WarningMessage | Warning | str, category: type[Warning], *_: object,
                  **__: object) -> None:
    print(f"[localmaker] warning: {message}", file=sys.stderr, flush=True)


def run_demo(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.deserializers import BytesDeserializer, JSONDeserializer
    from localmaker.deploy.serializers import JSONSerializer

    print(f"[localmaker] Packaging '{args.model}' and '{args.sd_model}' and deploying both "
          "(the first start loads the models)...", flush=True)
    with Session() as session:
        text_model = Model(model_data=args.model, role=DEMO_ROLE, sagemaker_session=session)
        image_model = Model(model_data=args.sd_model, role=DEMO_ROLE, sagemaker_session=session)
        with text_model.deploy(initial_instance_count=1, instance_type=args.instance_type,
                               serializer=JSONSerializer(), deserializer=JSONDeserializer()) as search, \
                image_model.deploy(initial_instance_count=1, instance_type=args.instance_type,
                                   serializer=JSONSerializer(), deserializer=BytesDeserializer()) as painter:
            answer = search.predict({"query": DEMO_QUERY, "documents": DEMO_DOCUMENTS, "top_k": len(DEMO_DOCUMENTS)})
            print(f"\nQuery: {DEMO_QUERY}\n")
            for result in answer["results"]:
                print(f"#{result['rank']} (score={result['score']:.4f}) → {result['text']}")
            print(f"\nPrompt: {DEMO_PROMPT}")
            png = painter.predict(DEMO_IMAGE_REQUEST, initial_args={"Accept": "image/png"})
            output = Path(args.image_output)
            output.write_bytes(png)
            print(f"Saved the image to {output.resolve()}")
            if args.sd_model == "tiny-sd":
                print("Note: the offline default 'tiny-sd' is a random-weight tiny pipeline (the real SD1.5 classes, "
                      "untrained), so the image is noise. Run `localmaker demo --sd-model DIR` with a Stable "
                      "Diffusion v1.5 directory for a real picture.")
            print()
        print("[localmaker] Endpoints deleted; every instance process has been stopped.")
    return 0


def _number_list(kind: type[float] | type[int]) -> Callable[[str], list[float] | list[int]]:
    def parse(text: str) -> list[float] | list[int]:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {kind.__name__}s, "
                                             "e.g. 5,7.5,9") from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return values

    return parse


def run_sweep(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.sweep import SweepSettings, contact_sheet, run_sweep, write_table

    settings = SweepSettings(prompt=args.prompt, guidance_scales=args.guidance, step_counts=args.steps,
                             negative_prompt=args.negative_prompt, size=args.size, seed=args.seed,
                             scheduler=args.scheduler)
    if args.endpoint:
        url = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if not url:
            raise ConfigurationError("--endpoint needs the control plane's URL: pass --endpoint-url or set "
                                     "AWS_ENDPOINT_URL to the address `localmaker up` printed")
        session = Session(endpoint_url=url)
        results = run_sweep(session, args.endpoint, settings)
    else:
        with Session() as session:
            model = Model(model_data=args.model, role=DEMO_ROLE, sagemaker_session=session)
            with model.deploy(initial_instance_count=1, instance_type=args.instance_type) as predictor:
                results = run_sweep(session, predictor.endpoint_name, settings)
    output = Path(args.output)
    contact_sheet(results, settings).save(output)
    table = write_table(results, Path(args.table) if args.table else output.with_suffix(".md"))
    print(f"contact sheet: {output.resolve()}\ntable: {table.resolve()}")
    return 0


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
    url = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    session = Session(endpoint_url=url) if url else Session()
    try:
        estimator = Estimator(entry_point=args.entry_point, source_dir=args.source_dir, role=DEMO_ROLE,
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
    from localmaker.model.style_dataset import make_style_dataset

    folder = make_style_dataset(Path(args.directory), count=args.count, size=args.size, seed=args.seed)
    print(f"wrote {args.count} captioned images to {folder.resolve()}")
    return 0


def run_up(args: argparse.Namespace) -> int:
    from localmaker.deploy.control_plane import ControlPlane
    from localmaker.model.sources import localmaker_home

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"[localmaker] warning: binding {args.host} exposes the control plane, and every endpoint's "
              "code, to other machines; use 127.0.0.1 unless you mean it", file=sys.stderr)
    work_root = localmaker_home() / "runs" / time.strftime("up-%Y%m%d-%H%M%S")
    control_plane = ControlPlane(host=args.host, port=args.port, work_root=work_root)
    print(f"[localmaker] control plane listening on {control_plane.url} (Ctrl-C or SIGTERM stops it and "
          f"every instance and training job it started); logs under {work_root}\n"
          f"export AWS_ENDPOINT_URL={control_plane.url}\n"
          "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1",
          flush=True)
    control_plane.serve_until_signalled()
    print("[localmaker] stopped; every process it started has been reaped", flush=True)
    return 0


def _attached_session(args: argparse.Namespace) -> Any:
    from localmaker.deploy import Session

    url = args.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not url:
        raise ConfigurationError("no control plane to talk to: start `localmaker up` and pass --endpoint-url "
                                 "or set AWS_ENDPOINT_URL to the address it printed")
    return Session(endpoint_url=url)


def run_endpoints(args: argparse.Namespace) -> int:
    session = _attached_session(args)
    endpoints = session.sagemaker_client.list_endpoints()["Endpoints"]
    if not endpoints:
        print("no endpoints")
    for summary in endpoints:
        name = summary["EndpointName"]
        try:
            local = session.local_endpoint(name)
            urls = ", ".join(f"{i['Url']} ({i['Device']})" for v in local["Variants"] for i in v["Instances"])
        except OSError:
            urls = "-"
        print(f"{name}\t{summary['EndpointStatus']}\t{urls}")
    return 0


def run_invoke(args: argparse.Namespace) -> int:
    body = Path(args.body[1:]).read_bytes() if args.body.startswith("@") else args.body.encode("utf-8")
    session = _attached_session(args)
    answer = session.sagemaker_runtime_client.invoke_endpoint(
        EndpointName=args.name, Body=body, ContentType=args.content_type, Accept=args.accept)
    payload = answer["Body"].read()
    if args.output:
        Path(args.output).write_bytes(payload)
        print(f"wrote {len(payload)} bytes of {answer['ContentType']} to {args.output}")
    elif answer["ContentType"].startswith(("application/json", "text/")):
        print(payload.decode("utf-8"))
    else:
        raise ConfigurationError(f"the answer is {answer['ContentType']} ({len(payload)} bytes); "
                                 "save it with -o FILE")
    return 0


def run_logs(args: argparse.Namespace) -> int:
    """An endpoint's container logs, or a training job's, from CloudWatch Logs; ``-f`` keeps following."""
    from localmaker.deploy.log_shipper import ENDPOINT_GROUP, TRAINING_GROUP

    session = _attached_session(args)
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    group, prefix = ENDPOINT_GROUP.format(name=args.name), ""
    try:
        logs.describe_log_streams(logGroupName=group)
    except logs.exceptions.ResourceNotFoundException:
        group, prefix = TRAINING_GROUP, f"{args.name}/"
    seen: dict[str, str | None] = {}
    while True:
        query = {"logGroupName": group, **({"logStreamNamePrefix": prefix} if prefix else {})}
        try:
            streams = logs.describe_log_streams(**query)["logStreams"]
        except logs.exceptions.ResourceNotFoundException:
            streams = []
        if not streams and not seen:
            raise ConfigurationError(f"no logs for {args.name!r}: it is neither an endpoint nor a training job "
                                     "that has written any")
        for stream in streams:
            name = stream["logStreamName"]
            request = {"logGroupName": group, "logStreamName": name, "startFromHead": True}
            if seen.get(name):
                request["nextToken"] = seen[name]
            answer = logs.get_log_events(**request)
            for event in answer["events"]:
                print(f"[{name}] {event['message']}", flush=True)
            seen[name] = answer["nextForwardToken"]
        if not args.follow:
            return 0
        time.sleep(1.0)


def run_delete(args: argparse.Namespace) -> int:
    client = _attached_session(args).sagemaker_client
    config = client.describe_endpoint(EndpointName=args.name)["EndpointConfigName"]
    client.delete_endpoint(EndpointName=args.name)
    client.delete_endpoint_config(EndpointConfigName=config)
    print(f"deleted endpoint {args.name} and its config {config}; its instances are stopped")
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

    demo = commands.add_parser("demo", help="deploy both models offline: the seed's search and its astronaut image")
    demo.add_argument("--model", default="minilm", help="embedding model source (default: the bundled MiniLM)")
    demo.add_argument("--sd-model", default="tiny-sd",
                      help="Stable Diffusion source: tiny-sd (random weights, offline), sd15 (HF cache) or a directory")
    demo.add_argument("--instance-type", default="ml.g5.xlarge")
    demo.add_argument("--image-output", default="localmaker-demo-astronaut.png", help="where to save the image")
    demo.set_defaults(run=run_demo)

    sweep = commands.add_parser("sweep", help="render guidance x steps as a labelled contact sheet")
    target = sweep.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="deploy this Stable Diffusion source for the sweep, then delete it")
    target.add_argument("--endpoint", help="reuse this running endpoint (see --endpoint-url)")
    sweep.add_argument("--endpoint-url", help="control plane URL for --endpoint (default: $AWS_ENDPOINT_URL)")
    sweep.add_argument("--prompt", required=True)
    sweep.add_argument("--guidance", type=_number_list(float), default=[5.0, 7.5, 9.0], help="e.g. 5,7.5,9")
    sweep.add_argument("--steps", type=_number_list(int), default=[20, 40, 70], help="e.g. 20,40,70")
    sweep.add_argument("--negative-prompt")
    sweep.add_argument("--size", type=int, help="height and width in pixels (default: the model's native size)")
    sweep.add_argument("--seed", type=int, default=42)
    sweep.add_argument("--scheduler", help="pndm, ddim, euler, euler_a, dpmpp_2m or lms")
    sweep.add_argument("--instance-type", default="ml.g5.xlarge")
    sweep.add_argument("-o", "--output", default="sweep.png")
    sweep.add_argument("--table", help="seconds per image: .md (default, beside the sheet) or .csv")
    sweep.set_defaults(run=run_sweep)

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
    style.add_argument("--count", type=int, default=12)
    style.add_argument("--size", type=int, default=64)
    style.add_argument("--seed", type=int, default=0)
    style.set_defaults(run=run_make_style_dataset)

    up = commands.add_parser("up", help="run the control plane standalone, for boto3 and SageMaker SDK scripts")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=4599)
    up.set_defaults(run=run_up)

    endpoints = commands.add_parser("endpoints", help="list the endpoints of a running `localmaker up`")
    endpoints.add_argument("--endpoint-url")
    endpoints.set_defaults(run=run_endpoints)

    invoke = commands.add_parser("invoke", help="call an endpoint through the control plane (InvokeEndpoint)")
    invoke.add_argument("name")
    invoke.add_argument("--body", required=True, help="the request body, or @FILE")
    invoke.add_argument("--content-type", default="application/json")
    invoke.add_argument("--accept", default="application/json")
    invoke.add_argument("-o", "--output", help="write the answer's body here (needed for binary answers)")
    invoke.add_argument("--endpoint-url")
    invoke.set_defaults(run=run_invoke)

    logs = commands.add_parser("logs", help="an endpoint's or training job's logs from CloudWatch Logs")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    logs.add_argument("--endpoint-url")
    logs.set_defaults(run=run_logs)

    delete = commands.add_parser("delete", help="delete an endpoint (and its config), stopping its instances")
    delete.add_argument("name")
    delete.add_argument("--endpoint-url")
    delete.set_defaults(run=run_delete)

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
    except Exception as exc:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(exc, ClientError | BotoCoreError):  # AWS said no: its message says why
            print(f"localmaker: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
