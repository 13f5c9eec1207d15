"""The peer benchmark: it runs end to end for localmaker and the in-process baseline, skips peers it has no
environment for with a line saying so, rejects a wrong vector, and leaves no server process behind.

CI has no peer environments (building one downloads hundreds of MB), so the peers themselves are not run
here; `python -m benchmarks.peers` runs them, and docs/benchmarks.md keeps its latest table.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks import peers
from benchmarks.peer_servers import ServerProcess, free_port


@pytest.mark.e2e
def test_localmaker_and_in_process_run_and_the_peers_are_skipped(capsys, tiny_qwen3_dir: Path):
    # tiny-qwen3 rather than MiniLM: the same code paths, deployed in a fraction of the time.
    peers.main(["--only", "localmaker", "localmaker-onnx", "inprocess", "--texts", "8", "--clients", "2",
                "--rounds", "2", "--model", str(tiny_qwen3_dir)])
    lines = capsys.readouterr().out.strip().splitlines()

    assert lines[0].startswith("machine: ")
    assert any(line.startswith("skipped infinity-emb 0.0.78: not selected (--only localmaker localmaker-onnx "
                               "inprocess)")
               for line in lines)
    assert any(line.startswith("skipped litserve 0.2.19: not selected") for line in lines)
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in lines if line.startswith("| ") and "---" not in line and not line.startswith("| server")}
    onnx = "localmaker endpoint, LOCALMAKER_EMBEDDING_BACKEND=onnxruntime (opt-in)"
    assert set(rows) == {"localmaker endpoint (default batching)", onnx,
                         "in-process sentence-transformers, encode(texts, batch_size=32)"}
    for label in ("localmaker endpoint (default batching)", onnx):
        run_1, run_2, median, ratio, p50, p99, cosine = rows[label]
        assert float(run_1) > 0 and float(run_2) > 0 and ratio.endswith("×")
        assert 0 < float(p50.replace(",", "")) <= float(p99.replace(",", ""))
        assert float(cosine) >= peers.MIN_COSINE, "no vector was compared"
    assert rows["localmaker endpoint (default batching)"][3] == "1.00×"
    assert lines[-2].startswith("localmaker / in-process batched = ")
    assert lines[-1].startswith("localmaker-onnx / in-process batched = ")


def test_a_peer_without_its_environment_is_skipped_when_installing_is_off(localmaker_home: Path, capsys):
    chosen = peers.selected_peers(peers.parse_args(["--no-install"]))

    assert chosen == {}
    out = capsys.readouterr().out
    for env in peers.peer_envs().values():
        assert f"skipped {env.name} {env.version}: no environment at {env.folder}" in out
        assert str(env.folder).startswith(str(localmaker_home))  # a cache folder, never the project's venv


def test_a_vector_that_is_not_the_in_process_one_stops_the_benchmark():
    reference = np.eye(3, 384, dtype=np.float32)
    row = peers.Row("server")
    row.record(1.0, reference * 3.0, reference, [0.1])  # scale does not matter: cosine 1
    for wrong in (np.roll(reference, 1, axis=1), np.zeros_like(reference), reference[:2]):
        with pytest.raises(RuntimeError, match="server: "):
            row.record(1.0, wrong, reference, [0.1])
    assert row.seconds == [1.0], "a rejected run must not count"


def test_stopping_a_server_ends_its_whole_process_group(tmp_path: Path):
    # A server whose worker ignores SIGTERM, as a stuck worker would: stop() must still end it.
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "server.py"
    script.write_text(textwrap.dedent(f"""
        import http.server, subprocess, sys
        worker = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
        open({str(pid_file)!r}, "w").write(str(worker.pid))
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
        http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
    """))
    port = free_port()
    server = ServerProcess("fake", [sys.executable, str(script), str(port)], "/health", port, tmp_path / "log")
    try:
        server.wait_ready(timeout_s=30)
        worker = int(pid_file.read_text())
    finally:
        server.stop()

    assert server.process.returncode is not None
    assert not _alive(worker), "the worker outlived its server"


def test_a_server_that_exits_before_it_is_ready_fails_at_once_with_its_log(tmp_path: Path):
    command = [sys.executable, "-c", "import sys; print('bad model dir'); sys.exit(3)"]
    server = ServerProcess("broken", command, "/health", free_port(), tmp_path / "log")
    try:
        with pytest.raises(RuntimeError, match=r"broken exited with 3 before it was ready(.|\n)*bad model dir"):
            server.wait_ready(timeout_s=30)
    finally:
        server.stop()


def _alive(pid: int) -> bool:
    """Running, and not a zombie waiting for an init that does not reap (as in some containers)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
