"""The /opt/ml wrapper: what a process sees in its namespace, what it keeps of its identity, and the fallback."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from localmaker.errors import ConfigurationError
from localmaker.local_endpoint import container_paths
from localmaker.local_endpoint.container_paths import MODEL_DIR, WRAPPER_FAILED, ContainerPaths
from tests.process_probe import is_alive

UNAVAILABLE = container_paths.probe()
needs_namespaces = pytest.mark.skipif(bool(UNAVAILABLE), reason=f"no user namespaces here: {UNAVAILABLE}")
REPORT = textwrap.dedent("""
    import json, os, pathlib
    model = pathlib.Path("/opt/ml/model")
    (model / "written.txt").write_text("from inside")
    print(json.dumps({"ids": [os.getpid(), os.getpgid(0), os.getsid(0), os.getppid()], "uid": os.getuid(),
                      "greeting": (model / "greeting.txt").read_text(), "cwd": os.getcwd(),
                      "opt": sorted(os.listdir("/opt"))}))
""")


@pytest.fixture
def fresh_state(monkeypatch):
    """A process that has not probed or logged yet."""
    monkeypatch.setattr(container_paths, "_probe_result", None)
    monkeypatch.setattr(container_paths, "_logged", set())


def test_the_mode_is_read_from_the_environment_once():
    assert ContainerPaths.from_env({}).mode == "auto"
    assert ContainerPaths.from_env({"LOCALMAKER_CONTAINER_PATHS": " Host "}).mode == "host"
    with pytest.raises(ConfigurationError, match="LOCALMAKER_CONTAINER_PATHS='docker'"):
        ContainerPaths.from_env({"LOCALMAKER_CONTAINER_PATHS": "docker"})


def test_host_mode_never_probes_and_says_so_in_one_line(fresh_state, monkeypatch, caplog):
    monkeypatch.setattr(container_paths, "probe", lambda: pytest.fail("host mode must not probe"))
    caplog.set_level(logging.INFO, logger=container_paths.__name__)
    paths = ContainerPaths("host")
    assert not paths.active() and not paths.active()
    assert [r.getMessage() for r in caplog.records] == [
        "container paths: LOCALMAKER_CONTAINER_PATHS=host, so instances and training jobs see their host folders "
        "rather than /opt/ml"]


def test_a_refused_namespace_falls_back_with_one_clear_line(fresh_state, monkeypatch, caplog):
    refusal = "unshare(CLONE_NEWUSER | CLONE_NEWNS) was refused: Operation not permitted"
    refused = [sys.executable, "-c", f"import sys; sys.exit({refusal!r})"]
    monkeypatch.setattr(container_paths, "_wrapper", lambda: refused)
    caplog.set_level(logging.INFO, logger=container_paths.__name__)
    paths = ContainerPaths()
    assert not paths.active() and not paths.active()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert f"/opt/ml is unavailable ({refusal})" in record.getMessage()
    assert "LOCALMAKER_CONTAINER_PATHS=host" in record.getMessage()


def test_anything_but_linux_falls_back(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "Linux namespaces are needed and this is darwin" in container_paths.probe()


def _model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "greeting.txt").write_text("hello from the artifact")
    return folder


@needs_namespaces
def test_the_process_sees_its_folder_at_opt_ml_and_keeps_its_pid_group_and_uid(tmp_path):
    host_opt = sorted(os.listdir("/opt"))
    folder = _model_folder(tmp_path)
    command = ContainerPaths.command([sys.executable, "-c", REPORT], {MODEL_DIR: folder}, cwd=MODEL_DIR)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    seen = json.loads(process.communicate(timeout=30)[0])
    assert process.returncode == 0
    # exec all the way: the pid the caller holds is the script's, and it leads its own group and session
    assert seen["ids"] == [process.pid, process.pid, process.pid, os.getpid()]
    assert seen["uid"] == os.getuid() and seen["greeting"] == "hello from the artifact"
    assert seen["cwd"] == MODEL_DIR
    assert seen["opt"] == sorted({*host_opt, "ml"}), "the host's /opt entries stay visible beside ml"
    written = folder / "written.txt"
    assert written.read_text() == "from inside" and written.stat().st_uid == os.getuid()
    assert sorted(os.listdir("/opt")) == host_opt, "the host's /opt is untouched"


@needs_namespaces
def test_a_group_signal_reaches_the_wrapped_process(tmp_path):
    command = ContainerPaths.command([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                                     {MODEL_DIR: _model_folder(tmp_path)})
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert process.stdout is not None and process.stdout.readline() == "up\n"
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=10) == -signal.SIGTERM


@needs_namespaces
def test_the_parent_death_signal_survives_the_wrapper(tmp_path):
    """What training_process.py relies on: the script dies with the control plane, through unshare and exec."""
    parent = textwrap.dedent(f"""
        import ctypes, os, signal, subprocess, sys
        from localmaker.local_endpoint.container_paths import ContainerPaths
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        command = ContainerPaths.command([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                                         {{"/opt/ml/model": {str(_model_folder(tmp_path))!r}}})
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True,
                                 preexec_fn=lambda: prctl(1, signal.SIGKILL))
        assert child.stdout.readline() == "up\\n"
        print(child.pid, flush=True)
        os._exit(0)  # as a control plane killed with SIGKILL: no cleanup
    """)
    root = str(Path(container_paths.__file__).resolve().parents[2])
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=30, cwd=root,
                            check=True)
    orphan = int(result.stdout.strip())
    deadline = time.monotonic() + 10
    while is_alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = is_alive(orphan)
    if alive:
        os.kill(orphan, signal.SIGKILL)
    assert not alive, "the wrapped child outlived its parent"


def test_a_wrapper_that_cannot_mount_fails_loudly_rather_than_running_elsewhere(tmp_path):
    command = ContainerPaths.command([sys.executable, "-c", "print('ran')"], {"/srv/model": tmp_path})
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == WRAPPER_FAILED and result.stdout == ""
    assert "cannot give this process SageMaker's /opt/ml paths: '/srv/model' is not a path under /opt" in result.stderr
