"""Every server binds loopback unless told otherwise (and then says so); no route loads code or models."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from localmaker.cli import build_parser
from localmaker.cli.exposure import is_loopback
from localmaker.control_plane.instance_process import free_port
from localmaker.deploy import Session
from localmaker.local_endpoint.app import create_app
from localmaker.local_endpoint.settings import EndpointSettings
from tests.reliability.conftest import HeldEndpoint
from tests.reliability.listening import listening_addresses, wait_for_listener

CLI = [sys.executable, "-m", "localmaker.cli"]
WARNING = "[localmaker] warning: binding 0.0.0.0 exposes"


def _status(url: str, method: str = "GET", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, method=method, data=body)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def _run_until_listening(args: list[str], port: int, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Start a CLI server, read where it listens, stop it; returns (addresses, its stderr)."""
    process = subprocess.Popen([*CLI, *args, "--port", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, **(env or {})})
    try:
        addresses = wait_for_listener(port)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, stderr = process.communicate(timeout=30)
    return addresses, stderr


def test_server_commands_default_to_loopback():
    parser = build_parser()
    assert parser.parse_args(["up"]).host == "127.0.0.1"
    assert parser.parse_args(["serve", "some-model"]).host == "127.0.0.1"


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("[::1]", True), ("127.3.2.1", True), ("0.0.0.0", False),
                                            ("::", False), ("192.168.1.20", False), ("my-laptop.lan", False)])
def test_only_loopback_addresses_count_as_private(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_listens_on_loopback_only_by_default_and_warns_when_told_otherwise(tiny_qwen3_dir, tmp_path):
    env = {"LOCALMAKER_CACHE_DIR": str(tmp_path)}
    port = free_port()
    addresses, stderr = _run_until_listening(["serve", str(tiny_qwen3_dir)], port, env)
    assert addresses == {"127.0.0.1"}
    assert "warning: binding" not in stderr

    port = free_port()
    addresses, stderr = _run_until_listening(["serve", str(tiny_qwen3_dir), "--host", "0.0.0.0"], port, env)
    assert addresses == {"0.0.0.0"}
    assert WARNING in stderr and f"the container serving {tiny_qwen3_dir}" in stderr


def test_up_warns_when_it_binds_beyond_loopback(localmaker_home):
    port = free_port()
    addresses, stderr = _run_until_listening(["up", "--host", "0.0.0.0"], port)
    assert addresses == {"0.0.0.0"}
    assert WARNING in stderr and "the control plane" in stderr


@pytest.fixture
def embedded_session(tmp_path: Path, localmaker_home: Path) -> Iterator[Session]:
    with Session(work_root=tmp_path / "control-plane") as session:
        yield session


def test_the_embedded_control_plane_listens_on_loopback_only(embedded_session):
    url = urlsplit(embedded_session.endpoint_url)
    assert url.hostname == "127.0.0.1"
    assert listening_addresses(url.port) == {"127.0.0.1"}


def test_every_instance_listens_on_loopback_only(queueing_endpoint: HeldEndpoint):
    info = queueing_endpoint.session.local_endpoint(queueing_endpoint.name)
    urls = [urlsplit(url) for url in info.instance_urls]
    assert urls
    for url in urls:
        assert url.hostname == "127.0.0.1"
        assert listening_addresses(url.port) == {"127.0.0.1"}


def test_localmakers_own_routes_are_read_only_and_moto_management_is_not_exposed(queueing_endpoint):
    base, name = queueing_endpoint.control_plane.url, queueing_endpoint.name
    routes = ["/_localmaker/endpoints", f"/_localmaker/endpoints/{name}", "/_localmaker/training-jobs/job",
              "/_localmaker/training-jobs/job/log", "/_localmaker/models", "/_localmaker/load"]
    for route in routes:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert _status(base + route, method, b"{}" if method != "DELETE" else None) == 405, (method, route)
    assert _status(f"{base}/_localmaker/endpoints/{name}") == 200
    for unknown in ("/_localmaker/", "/_localmaker/models", "/_localmaker/load", "/_localmaker/debug",
                    "/_localmaker/endpoints/a/b"):
        assert _status(base + unknown) == 404, unknown
    # moto's management API would reset every record, or write and replay a file in the working directory.
    for path, method in [("/moto-api/reset", "POST"), ("/moto-api/recorder/upload-recording", "POST"),
                         ("/moto-api/recorder/replay-recording", "POST"), ("/moto-api/config", "POST"),
                         ("/moto-api/data.json", "GET"), ("/moto-api", "GET")]:
        assert _status(base + path, method, b"{}" if method == "POST" else None) == 404, path
    assert queueing_endpoint.session.sagemaker_client.describe_endpoint(EndpointName=name)["EndpointStatus"] == \
        "InService", "nothing above may have reset moto's records"


def test_the_container_serves_only_ping_invocations_and_its_document_without_debug(tmp_path):
    code_dir = tmp_path / "model" / "code"
    code_dir.mkdir(parents=True)
    (code_dir / "inference.py").write_text("def model_fn(model_dir):\n    return 'model'\n")
    app = create_app(EndpointSettings(model_dir=code_dir.parent, code_dir=code_dir), load_in_background=False)

    routes = {(rule.rule, method) for rule in app.url_map.iter_rules()
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert routes == {("/ping", "GET"), ("/invocations", "POST"), ("/openapi.json", "GET")}  # no /static either
    assert app.debug is False and app.testing is False


def test_a_live_instance_has_no_debugger_or_other_routes(queueing_endpoint: HeldEndpoint):
    info = queueing_endpoint.session.local_endpoint(queueing_endpoint.name)
    url = info.instance_urls[0]
    assert _status(f"{url}/ping") == 200
    assert _status(f"{url}/ping", "POST", b"{}") == 405
    assert _status(f"{url}/openapi.json", "POST", b"{}") == 405
    assert _status(f"{url}/invocations") == 405
    # werkzeug's interactive debugger (which runs Python typed into a browser) answers these when enabled.
    for path in ("/console", "/?__debugger__=yes&cmd=resource&f=debugger.js", "/static/x", "/static/../app.py",
                 "/static/..%2Fapp.py", "/admin", "/models"):
        assert _status(f"{url}{path}") == 404, path
    body = json.loads(urllib.request.urlopen(f"{url}/openapi.json", timeout=30).read())
    assert set(body["paths"]) == {"/ping", "/invocations", "/openapi.json"}
