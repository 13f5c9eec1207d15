"""Scheduler names a request may choose, and a fresh scheduler for every generation.

A diffusers scheduler is stateful (``set_timesteps`` and every ``step`` change it), so sharing the
loaded pipeline's scheduler between requests would let one request see another's timesteps or, for the
multistep solvers, its history. Each generation gets a new instance built from the pipeline's own config
(its betas, timestep spacing and offsets), swapped to the class the request names.
"""

from __future__ import annotations

from typing import Any

from serving_errors import InvalidInput

# Request name -> (diffusers class, settings that make the class behave as the name says).
_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "pndm": ("PNDMScheduler", {}),  # the SD1.5 default (PLMS, as in the original release)
    "ddim": ("DDIMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "lms": ("LMSDiscreteScheduler", {}),
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(_SCHEDULERS)


def scheduler_name(scheduler: Any) -> str:
    """The request name of ``scheduler``'s class, or the class name when it is not one of ours."""
    class_name = type(scheduler).__name__
    for name, (cls_name, _) in _SCHEDULERS.items():
        if cls_name == class_name:
            return name
    return class_name


def fresh_scheduler(base: Any, name: str | None) -> Any:
    """A new scheduler from ``base``'s config: of the class ``name`` names, else of ``base``'s class."""
    if name is None:
        return type(base).from_config(base.config)
    import diffusers

    class_name, overrides = _SCHEDULERS[name]
    try:
        return getattr(diffusers, class_name).from_config(base.config, **overrides)
    except ImportError as exc:  # diffusers' placeholder for a class whose dependency is missing
        others = ", ".join(n for n in SCHEDULER_NAMES if n != name)
        raise InvalidInput(
            f'"parameters.scheduler" {name!r} needs a package this container lacks ({exc}): use one of {others}, '
            "or add the package to code/requirements.txt."
        ) from exc
