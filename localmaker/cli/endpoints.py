"""`localmaker up` and its clients: endpoints, invoke, logs and delete against a running control plane."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from localmaker.cli.arguments import PORT
from localmaker.cli.exposure import LOOPBACK, warn_if_exposed
from localmaker.cli.records import add_json_flag, print_json, print_json_line
from localmaker.cli.sessions import add_endpoint_url_flag, attached_session
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


def _instances(session: Any, name: str) -> list[dict[str, str]] | None:
    """The endpoint's instances as the control plane runs them; None when it cannot say (a serverless
    endpoint between calls has none, an endpoint being deleted may already be gone)."""
    try:
        return [{"InstanceId": i.instance_id, "Url": i.url, "Device": str(i.device)}
                for i in session.local_endpoint(name).instances]
    except OSError:
        return None


def run_endpoints(args: argparse.Namespace) -> int:
    session = attached_session(args)
    summaries = session.sagemaker_client.list_endpoints()["Endpoints"]
    if args.json:
        print_json([{**summary, "Instances": _instances(session, summary["EndpointName"]) or []}
                    for summary in summaries])
        return 0
    if not summaries:
        print("no endpoints")
    for summary in summaries:
        instances = _instances(session, summary["EndpointName"])
        urls = ", ".join(f"{i['Url']} ({i['Device']})" for i in instances) if instances else "-"
        print(f"{summary['EndpointName']}\t{summary['EndpointStatus']}\t{urls}")
    return 0


def run_invoke(args: argparse.Namespace) -> int:
    body = Path(args.body[1:]).read_bytes() if args.body.startswith("@") else args.body.encode("utf-8")
    session = attached_session(args)
    answer = session.sagemaker_runtime_client.invoke_endpoint(
        EndpointName=args.name, Body=body, ContentType=args.content_type, Accept=args.accept)
    payload = answer["Body"].read()
    content_type = answer["ContentType"]
    is_text = content_type.startswith(("application/json", "text/"))
    record: dict[str, Any] = {"EndpointName": args.name, "ContentType": content_type,
                              "InvokedProductionVariant": answer.get("InvokedProductionVariant")}
    if args.output:
        Path(args.output).write_bytes(payload)
        if args.json:
            print_json({**record, "Output": str(args.output), "Bytes": len(payload)})
        else:
            print(f"wrote {len(payload)} bytes of {content_type} to {args.output}")
    elif not is_text:
        raise ConfigurationError(f"the answer is {content_type} ({len(payload)} bytes); save it with -o FILE")
    elif args.json:
        text = payload.decode("utf-8")
        try:
            print_json({**record, "Body": json.loads(text)})
        except ValueError:  # text/plain, or a body that only claims to be JSON: kept as the text it is
            print_json({**record, "Body": text})
    else:
        print(payload.decode("utf-8"))
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
                if args.json:
                    print_json_line({"logGroupName": group, "logStreamName": name, "timestamp": event["timestamp"],
                                     "message": event["message"]})
                else:
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
    up.add_argument("--port", type=PORT, default=4599, help="the port to listen on; 0 picks a free one")
    up.set_defaults(run=run_up)

    endpoints = commands.add_parser("endpoints", help="list the endpoints of a running `localmaker up`")
    add_json_flag(endpoints, "a list of ListEndpoints records, each with its Instances")
    add_endpoint_url_flag(endpoints)
    endpoints.set_defaults(run=run_endpoints)

    invoke = commands.add_parser("invoke", help="call an endpoint through the control plane (InvokeEndpoint)")
    invoke.add_argument("name", help="the endpoint's name")
    invoke.add_argument("--body", required=True, help="the request body, or @FILE to send a file's bytes")
    invoke.add_argument("--content-type", default="application/json", help="the request's ContentType")
    invoke.add_argument("--accept", default="application/json", help="the answer's type to ask for")
    invoke.add_argument("-o", "--output", metavar="FILE",
                        help="write the answer's body here (needed for binary answers)")
    add_json_flag(invoke, "one record: ContentType, InvokedProductionVariant and the Body (parsed when JSON)")
    add_endpoint_url_flag(invoke)
    invoke.set_defaults(run=run_invoke)

    logs = commands.add_parser("logs", help="an endpoint's or training job's logs from CloudWatch Logs")
    logs.add_argument("name", help="an endpoint's or a training job's name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C stops)")
    add_json_flag(logs, "JSON Lines, one object per log event (logStreamName, timestamp, message)")
    add_endpoint_url_flag(logs)
    logs.set_defaults(run=run_logs)

    delete = commands.add_parser("delete", help="delete an endpoint (and its config), stopping its instances")
    delete.add_argument("name", help="the endpoint's name")
    add_endpoint_url_flag(delete)
    delete.set_defaults(run=run_delete)
