"""The environment an instance's handler runs in: localmaker's serving defaults, which the model's own win over."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from localmaker.inference import CODE_DIR
from tests.reliability.direct_instance import invoke, running_instance

REPORTING_HANDLER = """
    import os

    def model_fn(model_dir):
        return None

    def transform_fn(model, body, content_type, accept):
        return os.environ.get("OMP_WAIT_POLICY", ""), "text/plain"
"""


@pytest.mark.parametrize(("model_env", "seen"), [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")])
def test_openmp_threads_sleep_between_forward_passes_unless_the_model_says_otherwise(tmp_path: Path,
                                                                                      model_env: dict[str, str],
                                                                                      seen: str):
    with running_instance(tmp_path, model_env, REPORTING_HANDLER) as instance:
        status, _, body = invoke(instance.url, json.dumps({}).encode())
    assert (status, body.decode()) == (200, seen)


CACHE_REPORTING_HANDLER = REPORTING_HANDLER.replace('"OMP_WAIT_POLICY"', '"LOCALMAKER_CACHE_DIR"')


@pytest.mark.parametrize("model_sets_it", [False, True])
def test_the_handler_cache_is_shared_under_localmaker_home_unless_the_model_names_one(
        tmp_path: Path, localmaker_home: Path, model_sets_it: bool):
    model_env = {"LOCALMAKER_CACHE_DIR": str(tmp_path / "own")} if model_sets_it else {}
    with running_instance(tmp_path, model_env, CACHE_REPORTING_HANDLER) as instance:
        _, _, body = invoke(instance.url, json.dumps({}).encode())
    assert body.decode() == str(tmp_path / "own" if model_sets_it else localmaker_home / "handler-cache")


def test_the_launcher_names_the_handlers_cache_variable():
    from localmaker.local_endpoint.launch import ENV_CACHE_DIR
    from tests.inference.handler_loader import sibling

    assert ENV_CACHE_DIR == sibling("handler_settings").ENV_CACHE_DIR


def test_a_second_instance_of_the_same_model_reads_the_corpus_vectors_the_first_one_made(
        tmp_path: Path, localmaker_home: Path, minilm_dir: Path):
    """Each deployment extracts its model afresh, so a cache in the model's folder died with it and every
    deployment embedded the corpus again; the shared cache keeps the vectors for the next one."""
    logs = []
    for attempt in ("first", "second"):
        model_dir = tmp_path / attempt / "model"
        shutil.copytree(minilm_dir, model_dir)
        shutil.copytree(CODE_DIR, model_dir / "code")  # what deploy and pack add: the built-in handler
        (model_dir / "corpus.txt").write_text("a red apple\nthe stock market fell\na cat asleep on a mat\n")
        with running_instance(tmp_path / attempt, {}, model_dir=model_dir) as instance:
            status, _, body = invoke(instance.url, json.dumps({"query": "fruit", "top_k": 1}).encode())
        assert status == 200, body
        assert json.loads(body)["results"][0]["text"] == "a red apple"
        logs.append((tmp_path / attempt / "instance.log").read_text())
    assert "embedding corpus" in logs[0] and "embedding corpus" not in logs[1]
    assert f"loaded 3 corpus embeddings from cache {localmaker_home / 'handler-cache'}" in logs[1]
