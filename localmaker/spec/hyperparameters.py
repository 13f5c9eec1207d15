"""How SageMaker carries hyperparameters: every value JSON-encoded into a string, as the SDK sends them
in CreateTrainingJob and as the training toolkit passes them on (``SM_HPS``, ``--key value``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): json.dumps(value) for key, value in values.items()}


def decode_hyperparameter(raw: str) -> Any:
    """The value the SDK encoded; a string that is not JSON (a hand-written request) is taken as it is."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def decode_as_text(raw: str) -> str:
    """The value as a command-line argument: strings bare, anything else as its JSON text."""
    value = decode_hyperparameter(raw)
    return value if isinstance(value, str) else json.dumps(value)
