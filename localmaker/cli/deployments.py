"""`localmaker deploy`, `update` and `describe`: put an endpoint on a running `localmaker up`, change it,
and read it back, without writing Python.

Each goes through boto3 as a script would (CreateModel, CreateEndpointConfig, CreateEndpoint,
UpdateEndpoint, DescribeEndpoint), by way of the same Model and FakePredictor a script uses, so the
command line and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from localmaker.cli.arguments import key_value, whole_number
from localmaker.cli.records import add_json_flag, aws_record, print_json
from localmaker.cli.sessions import add_endpoint_url_flag, attached_session
from localmaker.errors import ConfigurationError, DeploymentError
from localmaker.spec.names import PLACEHOLDER_ROLE

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
WAIT_TIMEOUT_S = 960.0  # the 900 s a health check may take by default, and a margin to place the instances


class _WaitLine:
    """``[localmaker] Creating endpoint NAME ---!``: a dash a second until InService, as the SDK's wait."""

    def __init__(self, verb: str, name: str) -> None:
        print(f"[localmaker] {verb} endpoint {name} ", end="", flush=True)
        self._last = 0.0

    def __call__(self, status: str) -> None:
        now = time.monotonic()
        if status == "InService":
            print("!", flush=True)
        elif now - self._last >= 1.0:
            print("-", end="", flush=True)
            self._last = now


def _wait(session: Any, name: str, verb: str) -> None:
    line = _WaitLine(verb, name)
    try:
        session.wait_for_endpoint(name, timeout_s=WAIT_TIMEOUT_S, progress=line)
    except DeploymentError:
        print(flush=True)  # end the dashes, so the error starts on its own line
        raise


def _check_model_source(source: str) -> None:
    """A path meant as an archive that is not there: said as such, not as an unknown model name."""
    if source.startswith("s3://"):
        return
    path = Path(source.removeprefix("file://")).expanduser()
    if source.endswith(ARCHIVE_SUFFIXES) and not path.exists():
        raise ConfigurationError(f"model archive {source} does not exist: give the path of a model.tar.gz, "
                                 "a model directory or a named source such as tiny-qwen3 or minilm")


def _endpoint_exists(session: Any, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        session.sagemaker_client.describe_endpoint(EndpointName=name)
        return True
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ValidationException":
            raise
        return False


def _model(args: argparse.Namespace, session: Any) -> Any:
    from localmaker.deploy import Model

    _check_model_source(args.model)
    return Model(model_data=args.model, role=PLACEHOLDER_ROLE, entry_point=args.entry_point,
                 source_dir=args.source_dir, env=dict(args.env or []), sagemaker_session=session)


def invoke_url(session: Any, name: str) -> str:
    """Where a plain HTTP client posts a request: InvokeEndpoint's own path on the control plane."""
    return f"{session.endpoint_url}/endpoints/{name}/invocations"


def _print_ready(session: Any, name: str) -> None:
    print(f"endpoint {name} is InService\ninvoke URL: {invoke_url(session, name)}")


def run_deploy(args: argparse.Namespace) -> int:
    session = attached_session(args)
    name = args.endpoint_name
    if _endpoint_exists(session, name):  # asked before packing: a name in use is found out in a second
        raise ConfigurationError(f"endpoint {name!r} already exists: `localmaker update {name} --model ...` moves "
                                 f"it to another model, `localmaker delete {name}` removes it; or choose another "
                                 "--endpoint-name")
    model = _model(args, session)
    print(f"[localmaker] packing {args.model} and deploying it as endpoint {name} on "
          f"{args.instance_count} x {args.instance_type}", flush=True)
    model.deploy(initial_instance_count=args.instance_count, instance_type=args.instance_type,
                 endpoint_name=name, wait=False)
    try:
        _wait(session, name, "Creating")
    except DeploymentError as exc:
        raise DeploymentError(f"{exc}\nThe endpoint stays, Failed, as in SageMaker, so that `localmaker describe "
                              f"{name}` and `localmaker logs {name}` can show why; `localmaker delete {name}` "
                              "removes it") from None
    _print_ready(session, name)
    return 0


def _current_variant(session: Any, name: str) -> dict[str, Any]:
    client = session.sagemaker_client
    config = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
    variants = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    if len(variants) != 1 or "InstanceType" not in variants[0]:
        raise ConfigurationError(f"endpoint {name!r} has {len(variants)} variant(s) or a serverless one; "
                                 "`localmaker update` changes endpoints of one instance-based variant")
    return {**variants[0], "EndpointConfigName": config}


def run_update(args: argparse.Namespace) -> int:
    from localmaker.deploy.predictor import FakePredictor

    if not (args.model or args.instance_type or args.instance_count):
        args.usage_error("give what changes: --model, --instance-type or --instance-count")
    if (args.env or args.entry_point or args.source_dir) and not args.model:
        args.usage_error("--env, --entry-point and --source-dir describe a new model: give it with --model")
    session = attached_session(args)
    name = args.name
    if not _endpoint_exists(session, name):
        raise ConfigurationError(f"endpoint {name!r} does not exist, so there is nothing to update: "
                                 f"`localmaker endpoints` lists them; `localmaker deploy` creates one")
    variant = _current_variant(session, name)
    count = args.instance_count or int(variant["InitialInstanceCount"])
    instance_type = args.instance_type or str(variant["InstanceType"])
    print(f"[localmaker] updating endpoint {name} to {count} x {instance_type}"
          + (f" serving {args.model}" if args.model else f" (model {variant['ModelName']})"), flush=True)
    if args.model:
        _model(args, session).deploy(initial_instance_count=count, instance_type=instance_type,
                                     endpoint_name=name, update_endpoint=True, wait=False)
    else:
        FakePredictor(name, session).update_endpoint(initial_instance_count=count, instance_type=instance_type,
                                                     wait=False)
    _wait(session, name, "Updating")
    after = session.sagemaker_client.describe_endpoint(EndpointName=name)
    if after["EndpointConfigName"] == variant["EndpointConfigName"]:  # rolled back: InService, on the old config
        raise DeploymentError(f"endpoint {name!r} was not updated and still serves {variant['EndpointConfigName']!r}: "
                              f"{after.get('FailureReason') or 'no reason given'}")
    _print_ready(session, name)
    return 0


def run_describe(args: argparse.Namespace) -> int:
    session = attached_session(args)
    client = session.sagemaker_client
    described = aws_record(client.describe_endpoint(EndpointName=args.name))
    if args.json:
        print_json(described)
        return 0
    rows: list[tuple[str, Any]] = [(key, described.get(key)) for key in (
        "EndpointName", "EndpointStatus", "FailureReason", "EndpointConfigName", "EndpointArn",
        "CreationTime", "LastModifiedTime")]
    configured = {v["VariantName"]: v for v in client.describe_endpoint_config(
        EndpointConfigName=described["EndpointConfigName"])["ProductionVariants"]}
    for variant in described.get("ProductionVariants", []):
        setup = configured.get(variant["VariantName"], {})
        rows.append((f"Variant {variant['VariantName']}",
                     f"{variant.get('CurrentInstanceCount', '-')} x {setup.get('InstanceType', 'serverless')} "
                     f"serving model {setup.get('ModelName', '-')}"))
    rows.append(("InvokeUrl", invoke_url(session, args.name)))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        if value not in (None, ""):
            print(f"{key:<{width}}  {value}")
    return 0


def _add_model_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--entry-point", help="your inference script, inside --source-dir (default: inference.py)")
    parser.add_argument("--source-dir", help="the folder of your inference code (replaces the artifact's code/)")
    parser.add_argument("--env", action="append", type=key_value, metavar="KEY=VALUE",
                        help="an environment variable of the model's container; repeat for more")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deploy = commands.add_parser("deploy", help="deploy a model on a running `localmaker up` and wait until "
                                                "it is InService")
    deploy.add_argument("model", metavar="MODEL", help="a named source (tiny-qwen3, minilm, tiny-sd), a model "
                                                       "directory, a model.tar.gz or s3://bucket/key")
    required = deploy.add_argument_group("required arguments")
    required.add_argument("--endpoint-name", required=True, metavar="NAME", help="the new endpoint's name")
    deploy.add_argument("--instance-type", default="ml.m5.large", help="a SageMaker instance type")
    deploy.add_argument("--instance-count", type=whole_number(1), default=1, help="instances to start")
    _add_model_flags(deploy)
    add_endpoint_url_flag(deploy)
    deploy.set_defaults(run=run_deploy)

    update = commands.add_parser("update", help="move an endpoint to another model, instance type or count "
                                                "(UpdateEndpoint; it keeps answering meanwhile)")
    update.add_argument("name", help="the endpoint's name")
    update.add_argument("--model", help="serve this model instead (as for deploy; default: keep the current one)")
    update.add_argument("--instance-type", help="the new instance type (default: keep the current one)")
    update.add_argument("--instance-count", type=whole_number(1),
                        help="the new number of instances (default: keep the current one)")
    _add_model_flags(update)
    add_endpoint_url_flag(update)
    update.set_defaults(run=run_update, usage_error=update.error)

    describe = commands.add_parser("describe", help="an endpoint's status, config and variants (DescribeEndpoint)")
    describe.add_argument("name", help="the endpoint's name")
    add_json_flag(describe, "the DescribeEndpoint answer")
    add_endpoint_url_flag(describe)
    describe.set_defaults(run=run_describe)
