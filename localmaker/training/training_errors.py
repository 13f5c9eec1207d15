"""The errors that mean the job's inputs are wrong, as opposed to a failure while training.

The entry point turns any ``InvalidInputError`` into exit code 2 and a one-line failure reason, so each
message must say which input is wrong and how to fix it.
"""

from __future__ import annotations


class InvalidInputError(Exception):
    """The job's inputs are wrong (exit 2): the message says which one and how to fix it."""


class HyperparameterError(InvalidInputError):
    """A hyperparameter is unknown, missing, or out of range."""


class TrainingDataError(InvalidInputError):
    """The training channel is missing, empty, or holds an unreadable or uncaptioned image."""


class BaseModelError(InvalidInputError):
    """``base_model`` names nothing that can be loaded as a Stable Diffusion pipeline."""
