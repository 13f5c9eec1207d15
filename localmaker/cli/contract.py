"""`localmaker contract-test`: deploy an artifact and hold it to the SageMaker container contract, for CI."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from localmaker.cli.arguments import seconds, whole_number

DESCRIPTION = """\
Deploy SOURCE (a named source such as tiny-qwen3, a model directory, or a model.tar.gz) on an embedded
control plane, send requests straight to the instance, and check the SageMaker container contract.
The endpoint is deleted afterwards, whatever happened."""

EPILOG_INTRO = """\
Which types are checked: the examples file declares them. Each example that expects a 2xx declares its
Content-Type and Accept pair; the first such example is the request the probes break (a wrong
Content-Type, a wrong Accept, a truncated body for each declared JSON or .npy type, a body past 6 MB).
Without --examples the declaration is one JSON request, {"inputs": "contract test"}, which both
built-in handlers answer; give --examples for your own handler.

Examples file (JSON Lines), one case a line:
  {"name": "two texts", "body": {"inputs": ["a", "b"]}, "content_type": "application/json",
   "accept": "application/json", "expect_status": 200, "expect_json": {"dimensions": 4}, "tolerance": 1e-4}
  body: JSON (sent as JSON for JSON types, else a string sent as UTF-8) or body_base64 for binary;
  content_type and accept default to application/json, expect_status to 200; expect_json matches objects
  as subsets, lists item by item, numbers within tolerance (default 0).

Exit status: 0 when every check passed; 1 when any failed, or when the command could not run (a malformed
examples file, a model that cannot be packed: stderr then starts with "localmaker: error:"); 2 only for a
command line argparse refuses, as for every localmaker command."""


def _epilog() -> str:
    from localmaker.contract.check_names import DESCRIPTIONS, EXAMPLE_PREFIX

    width = max(len(name) for name in DESCRIPTIONS)
    rows = [f"  {name:<{width}}  {text}" for name, text in DESCRIPTIONS.items()]
    rows.append(f"  {EXAMPLE_PREFIX + 'NAME':<{width}}  each example answers its expect_status and expect_json")
    return "Checks:\n" + "\n".join(rows) + "\n\n" + EPILOG_INTRO


def run_contract_test(args: argparse.Namespace) -> int:
    from localmaker.contract.deployment import ContractTarget
    from localmaker.contract.examples import DEFAULT_CASES, load_examples
    from localmaker.contract.junit import write_junit
    from localmaker.contract.report import format_table, summary
    from localmaker.contract.runner import run_contract
    from localmaker.deploy import Session

    cases = load_examples(Path(args.examples)) if args.examples else list(DEFAULT_CASES)  # refused before deploying
    target = ContractTarget(source=args.source, entry_point=args.entry_point,
                            source_dir=Path(args.source_dir) if args.source_dir else None,
                            instance_type=args.instance_type, startup_timeout_s=args.startup_timeout,
                            request_timeout_s=args.request_timeout)
    # A named folder, so a failing check can point at the instance log that holds the traceback.
    work_root = Path(tempfile.mkdtemp(prefix="localmaker-contract-"))
    with Session(work_root=work_root, startup_timeout_s=args.startup_timeout) as session:
        run = run_contract(session, target, cases)
    print(f"\nContract test of {args.source} (endpoint {run.endpoint_name}, now deleted; "
          f"its instance logs are under {work_root})\n")
    print(format_table(run.results))
    print(f"\n{summary(run.results)}")
    if args.junit_xml:
        properties = {"source": args.source, "endpoint": run.endpoint_name, "instance_type": args.instance_type,
                      "logs": str(work_root)}
        written = write_junit(run.results, Path(args.junit_xml), f"contract-test.{target.label}", properties)
        print(f"JUnit XML: {written}")
    return 1 if run.failed else 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    contract = commands.add_parser("contract-test", help="deploy an artifact and check the SageMaker container "
                                                         "contract; JUnit XML for CI",
                                   description=DESCRIPTION, epilog=_epilog(),
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    contract.add_argument("source", metavar="SOURCE", help="tiny-qwen3, minilm, tiny-sd, a model directory or a "
                                                           "model.tar.gz")
    contract.add_argument("--entry-point", help="your inference script: a path (only that file is packed as code/, "
                                                "as the SDK does), or its name inside --source-dir")
    contract.add_argument("--source-dir", help="the folder of your inference code (replaces the artifact's code/)")
    contract.add_argument("--examples", metavar="FILE", help="the examples file (JSON Lines) that declares the "
                                                              "requests and answers; see below")
    contract.add_argument("--junit-xml", metavar="FILE", help="also write the results as JUnit XML")
    contract.add_argument("--instance-type", default="ml.m5.xlarge", help="default: ml.m5.xlarge (CPU)")
    contract.add_argument("--startup-timeout", type=whole_number(1), default=600, metavar="SECONDS",
                          help="how long /ping may take to answer 200 (default 600)")
    contract.add_argument("--request-timeout", type=seconds, default=300.0, metavar="SECONDS",
                          help="how long one request may take (default 300)")
    contract.set_defaults(run=run_contract_test)
