"""Where the base pipeline comes from. The script never imports localmaker; where it is installed, its
resolver runs in a child process (``python -m localmaker.model SPEC``) and prints the folder."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.training.script_loader import sibling

base_pipeline = sibling("base_pipeline")
BaseModelError = sibling("training_errors").BaseModelError


def test_a_named_source_resolves_through_localmaker(tiny_sd_dir: Path) -> None:
    assert Path(base_pipeline.resolve_base_model("tiny-sd", None)) == tiny_sd_dir


def test_the_resolver_prints_only_the_folder_or_fails_with_the_reason_last(tiny_sd_dir: Path) -> None:
    resolved = subprocess.run([sys.executable, "-m", "localmaker.model", "tiny-sd"], capture_output=True,
                              text=True, check=False)
    assert (resolved.returncode, resolved.stdout) == (0, f"{tiny_sd_dir}\n"), resolved.stderr
    assert "Warning" not in resolved.stderr
    failed = subprocess.run([sys.executable, "-m", "localmaker.model", "no-such-model"],
                            capture_output=True, text=True, check=False)
    assert failed.returncode == 2 and failed.stdout == ""
    assert failed.stderr.strip().splitlines()[-1].startswith("unknown model source 'no-such-model': expected")


def test_an_unknown_name_fails_with_localmakers_reason(localmaker_home: Path) -> None:
    with pytest.raises(BaseModelError, match=r"cannot resolve base_model 'no-such-model': unknown model source "
                                             r"'no-such-model': expected a named source \('minilm', .*'tiny-sd'"):
        base_pipeline.resolve_base_model("no-such-model", None)


def test_a_hub_id_localmaker_cannot_resolve_is_tried_as_a_hub_id(localmaker_home: Path) -> None:
    assert base_pipeline.resolve_base_model("someone/not-in-the-cache", None) == "someone/not-in-the-cache"


def test_without_localmaker_the_spec_is_passed_on_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a real training container: ``tiny-sd`` is left for from_pretrained, which reports it."""
    find_spec = importlib.util.find_spec

    def no_localmaker(name: str, *args: Any) -> Any:
        return None if name == "localmaker" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_localmaker)
    monkeypatch.setattr(base_pipeline, "resolve_with_localmaker", lambda spec: pytest.fail("ran the resolver"))
    assert base_pipeline.resolve_base_model("tiny-sd", None) == "tiny-sd"


def test_the_base_channel_wins_and_must_hold_a_pipeline(tiny_sd_dir: Path, tmp_path: Path) -> None:
    assert base_pipeline.resolve_base_model("anything", tiny_sd_dir) == str(tiny_sd_dir)
    with pytest.raises(BaseModelError, match="holds no model_index.json"):
        base_pipeline.resolve_base_model("tiny-sd", tmp_path)
    with pytest.raises(BaseModelError, match="pass it as the 'base' channel"):
        base_pipeline.resolve_base_model("s3://bucket/sd15", None)
