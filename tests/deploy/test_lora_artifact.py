"""A LoRA artifact is recognised wherever model_data is accepted, and a broken one fails when the Model is
made, naming what is wrong and how to fix it; `localmaker pack` and `serve` given an archive say what to run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from localmaker import ArtifactError, ConfigurationError
from localmaker.deploy import Model, Session
from localmaker.deploy.lora_artifact import probe_archive
from localmaker.spec.names import LORA_BASE_MODEL_FILE, LORA_WEIGHTS_FILE, PLACEHOLDER_ROLE

CLI = [sys.executable, "-m", "localmaker.cli"]


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _reference(base: object) -> bytes:
    return json.dumps({"base_model": base}).encode()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    with Session(work_root=tmp_path_factory.mktemp("cp")) as embedded:
        yield embedded


def test_an_adapter_whose_base_cannot_be_found_names_the_base_and_how_to_provide_it(session, tmp_path):
    archive = _archive(tmp_path / "lora.tar.gz", {LORA_BASE_MODEL_FILE: _reference("acme/no-such-base"),
                                                  LORA_WEIGHTS_FILE: b"weights"})
    with pytest.raises(ConfigurationError) as caught:
        Model(model_data=archive, role=PLACEHOLDER_ROLE, sagemaker_session=session)
    message = str(caught.value)
    assert "LoRA adapter for base model 'acme/no-such-base'" in message
    assert "hf download acme/no-such-base" in message and "retrain" in message


def test_the_same_adapter_uploaded_to_s3_fails_the_same_way(session, tmp_path):
    archive = _archive(tmp_path / "lora.tar.gz", {f"./{LORA_BASE_MODEL_FILE}": _reference("/nowhere/sd"),
                                                  f"./{LORA_WEIGHTS_FILE}": b"weights"})
    url = session.upload_file(archive, "hostile/lora/model.tar.gz")
    with pytest.raises(ConfigurationError, match=r"LoRA adapter for base model '/nowhere/sd'.*does not exist"):
        Model(model_data=url, role=PLACEHOLDER_ROLE, sagemaker_session=session)


@pytest.mark.parametrize(("members", "expected"), [
    ({LORA_BASE_MODEL_FILE: b"{not json", LORA_WEIGHTS_FILE: b"w"}, "is unreadable"),
    ({LORA_BASE_MODEL_FILE: b'["tiny-sd"]', LORA_WEIGHTS_FILE: b"w"}, "is unreadable"),
    ({LORA_BASE_MODEL_FILE: _reference(42), LORA_WEIGHTS_FILE: b"w"}, 'has no "base_model" string'),
    ({LORA_BASE_MODEL_FILE: _reference("  "), LORA_WEIGHTS_FILE: b"w"}, 'has no "base_model" string'),
    ({LORA_BASE_MODEL_FILE: _reference("tiny-sd")}, f"holds no {LORA_WEIGHTS_FILE}"),
])
def test_a_broken_reference_is_refused_when_the_model_is_made(session, tmp_path, members, expected):
    archive = _archive(tmp_path / "broken.tar.gz", members)
    with pytest.raises(ArtifactError, match=expected):
        Model(model_data=archive, role=PLACEHOLDER_ROLE, sagemaker_session=session)


def test_an_ordinary_archive_or_a_reference_in_a_subfolder_is_no_lora(tmp_path):
    plain = _archive(tmp_path / "plain.tar.gz", {"code/inference.py": b"def model_fn(d):\n    return d\n"})
    nested = _archive(tmp_path / "nested.tar.gz", {f"sub/{LORA_BASE_MODEL_FILE}": _reference("tiny-sd"),
                                                   f"sub/{LORA_WEIGHTS_FILE}": b"w"})
    assert probe_archive(plain, "plain") is None
    assert probe_archive(nested, "nested") is None


def test_pack_of_an_ordinary_archive_says_what_to_run_instead(tmp_path):
    plain = _archive(tmp_path / "model.tar.gz", {"config.json": b"{}"})
    result = subprocess.run([*CLI, "pack", str(plain), "-o", str(tmp_path / "out.tar.gz")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{plain} is already a model.tar.gz" in result.stderr
    assert f"Model(model_data='{plain}'" in result.stderr and "localmaker serve model" in result.stderr
    assert "not a directory" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.tar.gz").exists()


def test_pack_refuses_to_overwrite_the_adapter_and_serve_refuses_an_archive(tmp_path):
    lora = _archive(tmp_path / "lora.tar.gz", {LORA_BASE_MODEL_FILE: _reference("tiny-sd"),
                                               LORA_WEIGHTS_FILE: b"w"})
    packed = subprocess.run([*CLI, "pack", str(lora), "-o", str(lora)], capture_output=True, text=True, timeout=120)
    assert packed.returncode == 1 and "is the archive itself" in packed.stderr, packed.stderr
    served = subprocess.run([*CLI, "serve", str(lora)], capture_output=True, text=True, timeout=120)
    assert served.returncode == 1, served.stderr
    assert f"localmaker pack {lora} -o served.tar.gz" in served.stderr and "Traceback" not in served.stderr
