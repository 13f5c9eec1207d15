"""LoRA fine-tuning of a Stable Diffusion 1.x UNet, as a SageMaker training entry script.

``Estimator.fit()`` runs this file the way a SageMaker PyTorch training container does: a fresh
``python train_lora.py --key value ...`` with the training environment (``SM_CHANNEL_TRAINING``,
``SM_MODEL_DIR``, ``SM_OUTPUT_DATA_DIR``, ``SM_OUTPUT_DIR``, ...). It must also run unchanged in a real
container where localmaker is not installed, so it and its sibling modules (shipped with it in the
source dir, imported as top-level modules) never import localmaker; where localmaker is installed, its
resolver runs in a child process to resolve named sources such as ``tiny-sd``.

The recipe is diffusers' text-to-image LoRA one: frozen VAE, text encoder and UNet; a peft LoRA adapter
on the UNet's attention projections; noise-prediction MSE on VAE latents; AdamW on the LoRA weights
only. The result is saved as ``pytorch_lora_weights.safetensors``, the file stock
``pipe.load_lora_weights(dir)`` and localmaker's serving code read, plus ``localmaker_base_model.json``
naming the base it was trained on, so the deploy side knows which pipeline to serve it with.

Everything that can be checked before a model loads (hyperparameters, the channel, every image and
caption) is checked first, so a wrong input fails in seconds with a message saying what to fix; that
message also goes to ``$SM_OUTPUT_DIR/failure``, which SageMaker reports as the job's FailureReason.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict

from base_pipeline import load_components, resolve_base_model
from hyperparameters import Hyperparameters, parse_hyperparameters
from lora_adapter import save_lora
from loss_curve import LOSS_CURVE_FILE, draw_loss_curve
from training_data import scan_training_data
from training_environment import TrainingEnvironment, resolve_device, resolve_precision
from training_errors import InvalidInputError
from training_loop import train
from training_outputs import BASE_MODEL_FILE, failure_reason, write_base_reference, write_failure, write_metrics

logger = logging.getLogger(__name__)

EXIT_FAILED = 1
EXIT_INVALID = 2


def run(argv: list[str], environ: dict[str, str]) -> None:
    """Validate everything cheap first, then load, train and write the outputs."""
    hp = parse_hyperparameters(argv, environ.get("SM_HPS"))
    env = TrainingEnvironment.from_environ(environ)
    device = resolve_device(env.num_gpus)
    precision = resolve_precision(hp.mixed_precision, device)
    examples = scan_training_data(env.training_channel)
    base = resolve_base_model(hp.base_model, env.base_channel)
    logger.info("host %s: LoRA on %s (%s), %s", env.current_host, hp.base_model, base, asdict(hp))
    _quiet_libraries()
    components = load_components(base, hp.base_model)
    result = train(hp, examples, components, device, precision)
    weights = save_lora(components["unet"], env.model_dir)
    write_base_reference(env.model_dir, hp)
    write_metrics(env.output_data_dir, hp, result, len(examples))
    try:
        draw_loss_curve(result.losses, env.output_data_dir / LOSS_CURVE_FILE)
    except Exception:  # the model is saved: a plot must not fail the job
        logger.warning("could not draw %s", LOSS_CURVE_FILE, exc_info=True)
    logger.info("saved %s and %s; metrics and loss curve in %s", weights, BASE_MODEL_FILE, env.output_data_dir)


def _print_help() -> None:
    defaults = {k: v for k, v in asdict(Hyperparameters(base_model="")).items() if k != "base_model"}
    defaults["mixed_precision"] = "bf16|fp16 on CUDA, no on the CPU"
    sys.stdout.write("usage: train_lora.py --base_model SOURCE [--name value ...]\nhyperparameters (defaults): "
                     + ", ".join(f"{k}={v}" for k, v in defaults.items()) + "\n")


def _quiet_libraries() -> None:
    """Keep the libraries' loading bars and notices (torchvision missing, say) out of the training log:
    on a job's log page they bury the script's own lines, and none of them is something to act on."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_progress_bar()
        library.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    """Run the job; exit 0 when it is done, 2 for a wrong input, 1 for a failure while training."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help"):
        _print_help()
        return 0
    environ = dict(os.environ)
    try:
        run(args, environ)
    except InvalidInputError as exc:
        reason = failure_reason(exc)
        logger.error("%s", reason)
        write_failure(environ.get("SM_OUTPUT_DIR"), reason)
        return EXIT_INVALID
    except Exception as exc:
        logger.exception("training failed")
        write_failure(environ.get("SM_OUTPUT_DIR"), failure_reason(exc))
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
