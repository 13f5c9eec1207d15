"""The ``localmaker`` command as a user runs it: demo, pack and serve, as real processes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from localmaker.cli import DEMO_DOCUMENTS, DEMO_QUERY
from localmaker.control_plane.instance_process import free_port

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "localmaker.cli"]


def test_demo_runs_both_endpoints_and_prints_the_seed_ranking_of_the_real_model(
        minilm_dir, tiny_sd_dir, localmaker_home, tmp_path):
    image = tmp_path / "astronaut.png"
    done = subprocess.run([*CLI, "demo", "--image-output", str(image)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("Simulated deployment") == 2, "both endpoints are up at once"
    assert "runs locally on cpu at http://127.0.0.1:" in done.stdout
    assert "ml.g5.xlarge (NVIDIA A10G 24 GiB" in done.stdout
    assert "this machine has none" in done.stderr  # the GPU type on a CPU machine is said out loud
    ranking = re.findall(r"^#(\d) \(score=(\d\.\d{4})\) → (.+)$", done.stdout, flags=re.MULTILINE)
    assert [int(rank) for rank, _, _ in ranking] == [1, 2, 3, 4]

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_dir), device="cpu")
    vectors = reference.encode([DEMO_QUERY, *DEMO_DOCUMENTS], normalize_embeddings=True)
    scores = vectors[1:] @ vectors[0]
    order = np.argsort(-scores)
    assert [text for _, _, text in ranking] == [DEMO_DOCUMENTS[i] for i in order]
    assert [float(score) for _, score, _ in ranking] == pytest.approx(scores[order], abs=1e-4)
    assert f"Saved the image to {image.resolve()}" in done.stdout
    assert "patch of colour, not an astronaut" in done.stdout
    with Image.open(image) as saved:
        assert saved.format == "PNG" and saved.size == (64, 64)
    assert "Endpoints deleted" in done.stdout


def test_pack_writes_a_sagemaker_layout_archive_with_corpus(tmp_path, tiny_qwen3_dir):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first document\nsecond document\n")
    archive = tmp_path / "model.tar.gz"
    done = subprocess.run([*CLI, "pack", str(tiny_qwen3_dir), "-o", str(archive), "--corpus", str(corpus)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"config.json", "model.safetensors", "corpus.txt", "code/inference.py",
            "code/requirements.txt"} <= names


def test_pack_reports_an_unknown_source_without_a_traceback(tmp_path):
    done = subprocess.run([*CLI, "pack", "no-such-model", "-o", str(tmp_path / "m.tar.gz")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("localmaker: error:")
    assert "Traceback" not in done.stderr


def test_serve_runs_one_container_in_the_foreground_and_stops_on_sigterm(tiny_qwen3_dir, tmp_path):
    port = free_port()
    server = subprocess.Popen([*CLI, "serve", str(tiny_qwen3_dir), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              env={**os.environ, "LOCALMAKER_CACHE_DIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as ping:
                    if ping.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, "serve exited before it was healthy"
            assert time.monotonic() < deadline, "serve never became healthy"
            time.sleep(0.3)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations",
                                         data=json.dumps({"inputs": ["hello"]}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert len(json.load(answer)["embeddings"]) == 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        assert server.wait(timeout=30) == 0
