"""`localmaker up` and its clients: endpoints, invoke, logs and delete against a running control plane."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from localmaker.cli.arguments import PORT
from localmaker.cli.exposure import LOOPBACK, warn_if_exposed
from localmaker.cli.sessions import attached_session
from localmaker.errors import ConfigurationError
from localmaker.spec.names import LOCAL_CREDENTIALS, TRAINING_LOG_GROUP, endpoint_log_group
from localmaker.spec.sdk_config import CONFIG_ENV_VAR, CONFIG_FILE, sdk_config


def run_up(args: argparse.Namespace) -> int:
    from localmaker.control_plane.server import ControlPlane
    from localmaker.model.sources import localmaker_home

    warn_if_exposed(args.host, "the control plane (which deploys and runs model code)")
    work_root = localmaker_home() / "runs" / time.strftime("up-%Y%m%d-%H%M%S")
    control_plane = ControlPlane(host=args.host, port=args.port, work_root=work_root)
    config = work_root / CONFIG_FILE
    try:
        config.write_text(sdk_config(control_plane.region), encoding="utf-8")
    except BaseException:
        control_plane.stop()
        raise
    credentials = " ".join(f"{name.upper()}={value}" for name, value in LOCAL_CREDENTIALS.items())
    print(f"[localmaker] control plane listening on {control_plane.url} (Ctrl-C or SIGTERM stops it and "
          f"every instance and training job it started); logs under {work_root}\n"
          f"export AWS_ENDPOINT_URL={control_plane.url}\n"
          f"export {credentials} AWS_DEFAULT_REGION={control_plane.region}\n"
          f"export {CONFIG_ENV_VAR}={config}  # SageMaker SDK: default bucket, no STS or telemetry calls to AWS",
          flush=True)
    control_plane.serve_until_signalled()
    print("[localmaker] stopped; every process it started has been reaped", flush=True)
    return 0


def run_endpoints(args: argparse.Namespace) -> int:
    session = attached_session(args)
    endpoints = session.sagemaker_client.list_endpoints()["Endpoints"]
    if not endpoints:
        print("no endpoints")
    for summary in endpoints:
        name = summary["EndpointName"]
        try:
            urls = ", ".join(f"{i.url} ({i.device})" for i in session.local_endpoint(name).instances)
        except OSError:
            urls = "-"
        print(f"{name}\t{summary['EndpointStatus']}\t{urls}")
    return 0


def run_invoke(args: argparse.Namespace) -> int:
    body = Path(args.body[1:]).read_bytes() if args.body.startswith("@") else args.body.encode("utf-8")
    session = attached_session(args)
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
    session = attached_session(args)
    logs = session.boto_session.client("logs", endpoint_url=session.endpoint_url)
    group, prefix = endpoint_log_group(args.name), ""
    try:
        logs.describe_log_streams(logGroupName=group)
    except logs.exceptions.ResourceNotFoundException:
        group, prefix = TRAINING_LOG_GROUP, f"{args.name}/"
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
    client = attached_session(args).sagemaker_client
    config = client.describe_endpoint(EndpointName=args.name)["EndpointConfigName"]
    client.delete_endpoint(EndpointName=args.name)
    client.delete_endpoint_config(EndpointConfigName=config)
    print(f"deleted endpoint {args.name} and its config {config}; its instances are stopped")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser("up", help="run the control plane standalone, for boto3 and SageMaker SDK scripts")
    up.add_argument("--host", default=LOOPBACK, help="the address to bind; anything but loopback is warned about")
    up.add_argument("--port", type=PORT, default=4599)
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
