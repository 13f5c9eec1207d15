"""Environment variables are read once into a frozen object and checked there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.inference.handler_loader import sibling

settings_mod = sibling("handler_settings")
errors = sibling("serving_errors")


def test_defaults_choose_automatically() -> None:
    settings = settings_mod.HandlerSettings.from_env({})
    assert settings == settings_mod.HandlerSettings()
    assert (settings.device, settings.dtype, settings.pooling, settings.cache_dir) == (None, None, None, None)
    assert settings.trust_remote_code is False and settings.allow_pickle is False
    assert settings.batch_size == 32
    assert settings.safety_checker is True and settings.torch_compile is False
    assert settings.max_pixels == 4 * 768 * 768
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.device = "cpu"


def test_values_are_parsed() -> None:
    settings = settings_mod.HandlerSettings.from_env(
        {
            "LOCALMAKER_DEVICE": "cuda:0",
            "LOCALMAKER_DTYPE": "BFloat16",
            "LOCALMAKER_POOLING": "last_token",
            "LOCALMAKER_TRUST_REMOTE_CODE": "1",
            "LOCALMAKER_ALLOW_PICKLE": "true",
            "LOCALMAKER_CACHE_DIR": "/tmp/x",
            "LOCALMAKER_BATCH_SIZE": "4",
            "LOCALMAKER_SAFETY_CHECKER": "0",
            "LOCALMAKER_TORCH_COMPILE": "yes",
            "LOCALMAKER_MAX_PIXELS": "65536",
        }
    )
    assert settings == settings_mod.HandlerSettings(
        device="cuda:0",
        dtype="bfloat16",
        pooling="last_token",
        trust_remote_code=True,
        allow_pickle=True,
        cache_dir=Path("/tmp/x"),
        batch_size=4,
        safety_checker=False,
        torch_compile=True,
        max_pixels=65536,
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("LOCALMAKER_POOLING", "max", "mean, last_token, cls"),
        ("LOCALMAKER_DTYPE", "float64", "float32, float16, bfloat16"),
        ("LOCALMAKER_TRUST_REMOTE_CODE", "maybe", "set it to 1"),
        ("LOCALMAKER_BATCH_SIZE", "0", "positive integer"),
        ("LOCALMAKER_SAFETY_CHECKER", "off-ish", "set it to 1"),
        ("LOCALMAKER_TORCH_COMPILE", "2", "set it to 1"),
        ("LOCALMAKER_MAX_PIXELS", "-5", "positive integer"),
    ],
)
def test_invalid_values_name_the_variable_and_the_allowed_values(name: str, value: str, expected: str) -> None:
    with pytest.raises(errors.ModelLoadError) as info:
        settings_mod.HandlerSettings.from_env({name: value})
    assert name in str(info.value) and expected in str(info.value)


def test_the_safety_checker_is_on_unless_turned_off() -> None:
    assert settings_mod.HandlerSettings.from_env({"LOCALMAKER_SAFETY_CHECKER": ""}).safety_checker is True
    assert settings_mod.HandlerSettings.from_env({"LOCALMAKER_SAFETY_CHECKER": "1"}).safety_checker is True
    assert settings_mod.HandlerSettings.from_env({"LOCALMAKER_SAFETY_CHECKER": "0"}).safety_checker is False
