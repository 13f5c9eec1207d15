"""`localmaker sweep`: render guidance x steps for one prompt as a labelled contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

from localmaker.cli.arguments import SEED, image_path, number_list, whole_number
from localmaker.cli.sessions import control_plane_url
from localmaker.errors import ConfigurationError
from localmaker.spec.names import PLACEHOLDER_ROLE

# The default grid. Guidance from 1 (no classifier-free guidance) to 20 (strongly steered, oversaturated on
# SD1.5) shows the trade-off on any model; the seed report's 5, 7.5 and 9 lie close together (on tiny-sd,
# mean pixel differences of 7 and 3 between those rows against 23 and 15 here; docs/reliability.md).
DEFAULT_GUIDANCE = (1.0, 7.5, 20.0)
DEFAULT_STEPS = (20, 40, 70)


def run_sweep(args: argparse.Namespace) -> int:
    from localmaker.deploy import Model, Session
    from localmaker.deploy.sweep import SweepSettings, contact_sheet, run_sweep, write_table

    if not args.output.resolve().parent.is_dir():  # found out now, not after the whole sweep has run
        raise ConfigurationError(f"cannot write {args.output}: its folder does not exist")
    settings = SweepSettings(prompt=args.prompt, guidance_scales=args.guidance, step_counts=args.steps,
                             negative_prompt=args.negative_prompt, size=args.size, seed=args.seed,
                             scheduler=args.scheduler)
    if args.endpoint:
        url = control_plane_url(args)
        if not url:
            raise ConfigurationError("--endpoint needs the control plane's URL: pass --endpoint-url or set "
                                     "AWS_ENDPOINT_URL to the address `localmaker up` printed")
        session = Session(endpoint_url=url)
        results = run_sweep(session, args.endpoint, settings)
    else:
        with Session() as session:
            model = Model(model_data=args.model, role=PLACEHOLDER_ROLE, sagemaker_session=session)
            with model.deploy(initial_instance_count=1, instance_type=args.instance_type) as predictor:
                results = run_sweep(session, predictor.endpoint_name, settings)
    output = Path(args.output)
    contact_sheet(results, settings).save(output)
    table = write_table(results, Path(args.table) if args.table else output.with_suffix(".md"), settings)
    print(f"contact sheet: {output.resolve()}\ntable: {table.resolve()}")
    return 0


def _listed(values: tuple[float, ...] | tuple[int, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sweep = commands.add_parser("sweep", help="render guidance x steps as a labelled contact sheet")
    target = sweep.add_mutually_exclusive_group(required=True)
    target.add_argument("--model", help="deploy this Stable Diffusion source for the sweep, then delete it")
    target.add_argument("--endpoint", help="reuse this running endpoint (see --endpoint-url)")
    sweep.add_argument("--endpoint-url", help="control plane URL for --endpoint (default: $AWS_ENDPOINT_URL)")
    sweep.add_argument("--prompt", required=True)
    sweep.add_argument("--guidance", type=number_list(float), default=list(DEFAULT_GUIDANCE),
                       help=f"guidance scales, the rows (default: {_listed(DEFAULT_GUIDANCE)})")
    sweep.add_argument("--steps", type=number_list(int), default=list(DEFAULT_STEPS),
                       help=f"step counts, the columns (default: {_listed(DEFAULT_STEPS)})")
    sweep.add_argument("--negative-prompt")
    sweep.add_argument("--size", type=whole_number(64, 1024),
                       help="height and width in pixels (default: the model's native size)")
    sweep.add_argument("--seed", type=SEED, default=42)
    sweep.add_argument("--scheduler", help="pndm, ddim, euler, euler_a, dpmpp_2m or lms")
    sweep.add_argument("--instance-type", default="ml.g5.xlarge")
    sweep.add_argument("-o", "--output", type=image_path, default="sweep.png")
    sweep.add_argument("--table", help="seconds per image: .md (default, beside the sheet) or .csv")
    sweep.set_defaults(run=run_sweep)
