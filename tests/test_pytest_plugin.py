"""The pytest plugin as a user meets it: their own test module, run by a separate pytest process."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.process_probe import group_members

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).parent / "plugin_example" / "test_my_endpoint.py"
README = Path(__file__).parents[1] / "README.md"

# Not part of the example: checks each test's endpoints are gone once the plugin's teardown ran, and
# records their instance process groups so this test can check that none outlived the inner run.
HARNESS_CONFTEST = """
import json
import os

import pytest


@pytest.fixture(autouse=True)
def endpoints_deleted_after_test(localmaker_session):
    yield
    # Set up before localmaker_endpoint (see below), so this runs after its teardown.
    assert localmaker_session.sagemaker_client.list_endpoints()["Endpoints"] == []


@pytest.fixture(autouse=True)
def record_instance_groups(endpoints_deleted_after_test, localmaker_endpoint, localmaker_session):
    yield
    client = localmaker_session.sagemaker_client
    for endpoint in client.list_endpoints()["Endpoints"]:
        info = localmaker_session.local_endpoint(endpoint["EndpointName"])
        with open(os.environ["LOCALMAKER_GROUP_RECORD"], "a") as record:
            for instance in info.instances:
                record.write(json.dumps(instance.pid) + "\\n")
"""

# Not part of the example either: a deployment that fails must be cleaned up too.
FAILED_DEPLOYMENT = """
import pytest

from localmaker import DeploymentError


def test_a_failed_deployment_raises(localmaker_endpoint, tmp_path):
    (tmp_path / "inference.py").write_text("def model_fn(model_dir):\\n    raise RuntimeError('no weights')\\n")
    with pytest.raises(DeploymentError, match="no weights"):
        localmaker_endpoint("tiny-qwen3", source_dir=tmp_path)
"""


def _sources(home: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (home / "sources").iterdir()}


@pytest.fixture
def inner_record(pytester: pytest.Pytester, localmaker_home: Path,
                 monkeypatch: pytest.MonkeyPatch) -> Callable[[str, str], Path]:
    """For the inner pytest run: this session's LOCALMAKER_HOME, so that it finds tiny-qwen3 where this
    session built it rather than building its own copy, and a record file that ``variable`` names."""
    monkeypatch.setenv("LOCALMAKER_HOME", str(localmaker_home))

    def record_in(variable: str, name: str) -> Path:
        record = pytester.path / name
        monkeypatch.setenv(variable, str(record))
        return record

    return record_in


@pytest.mark.e2e
def test_a_user_test_module_deploys_predicts_and_tears_down_through_the_plugin(
        pytester: pytest.Pytester, tiny_qwen3_dir: Path, localmaker_home: Path, inner_record):
    record = inner_record("LOCALMAKER_GROUP_RECORD", "instance-groups.txt")
    sources_before = _sources(localmaker_home)
    pytester.makepyfile(test_my_endpoint=EXAMPLE.read_text(), test_failed_deployment=FAILED_DEPLOYMENT)
    pytester.makeconftest(HARNESS_CONFTEST)

    # Nothing names the plugin: the inner pytest finds it through the installed pytest11 entry point.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)

    result.assert_outcomes(passed=3)
    groups = [json.loads(line) for line in record.read_text().splitlines()]
    # The example's two endpoints ran one instance each; whether a Failed endpoint still lists its stopped
    # instance is the control plane's business.
    assert len(groups) >= 2
    assert not {group: group_members(group) for group in groups if group_members(group)}
    assert _sources(localmaker_home) == sources_before
    assert not (pytester.path / ".cache" / "localmaker").exists()  # pytester's HOME: no private build


def test_the_readme_shows_the_example_that_is_run_verbatim():
    assert EXAMPLE.read_text() in README.read_text()


def test_loading_the_plugin_imports_no_deploy_layer_and_no_torch(pytester: pytest.Pytester):
    pytester.makepyfile(test_imports="""
        import sys

        def test_nothing_heavy_was_imported(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("localmaker")
            heavy = [m for m in ("torch", "boto3", "moto", "localmaker.deploy") if m in sys.modules]
            assert heavy == []
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


def test_unknown_options_are_refused_before_anything_is_deployed():
    from localmaker.deploy import Model
    from localmaker.pytest_plugin import _split_options

    model_kwargs, deploy_kwargs = _split_options(Model, {"corpus": "c.jsonl", "initial_instance_count": 2})
    assert model_kwargs == {"corpus": "c.jsonl"}
    assert deploy_kwargs == {"initial_instance_count": 2}
    with pytest.raises(TypeError, match="initial_instance_cont"):
        _split_options(Model, {"initial_instance_cont": 2})


# A handler that answers with the pid of the instance that serves it: one pid, one instance start.
SHARED_CONFTEST = """
import json
import os

import pytest

HANDLER = "import os\\n\\ndef model_fn(model_dir):\\n    return os.getpid()\\n\\ndef predict_fn(data, model):\\n" \\
          "    return {'pid': model}\\n"


@pytest.fixture(scope="session")
def code_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("code")
    (folder / "inference.py").write_text(HANDLER)
    return folder


@pytest.fixture(scope="module")
def module_predictor(localmaker_module_endpoint, code_dir):
    return localmaker_module_endpoint("tiny-qwen3", source_dir=code_dir)


@pytest.fixture(scope="session")
def shared_predictor(localmaker_session_endpoint, code_dir):
    return localmaker_session_endpoint("tiny-qwen3", source_dir=code_dir)


@pytest.fixture
def record(request, localmaker_session):
    def write(scope, predictor):
        with open(os.environ["LOCALMAKER_SCOPE_RECORD"], "a") as out:
            out.write(json.dumps({"module": request.module.__name__, "scope": scope,
                                  "endpoint": predictor.endpoint_name, "pid": predictor.predict({})["pid"],
                                  "control_plane": localmaker_session.endpoint_url}) + "\\n")
    return write
"""
SHARING_MODULE = """
def test_first(module_predictor, shared_predictor, record):
    record("module", module_predictor)
    record("session", shared_predictor)


def test_second(module_predictor, shared_predictor, record):
    record("module", module_predictor)
    record("session", shared_predictor)
"""
# Failures as a user's test meets them: the container's traceback, not localmaker's internals.
FAILING_MODULE = """
PREDICT_FAILS = "def model_fn(model_dir):\\n    return 1\\n\\n\\ndef predict_fn(data, model):\\n" \\
                "    return data['inputs'] / 2\\n"


def test_a_500(localmaker_endpoint, tmp_path):
    (tmp_path / "inference.py").write_text(PREDICT_FAILS)
    predictor = localmaker_endpoint("tiny-qwen3", source_dir=tmp_path)
    predictor.predict({"inputs": "one sentence"})


def test_a_broken_model_fn(localmaker_endpoint, tmp_path):
    (tmp_path / "inference.py").write_text("import os\\n\\ndef model_fn(model_dir):\\n    return os.environ['NOPE']\\n")
    localmaker_endpoint("tiny-qwen3", source_dir=tmp_path)
"""


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.e2e
def test_module_and_session_scoped_endpoints_start_once_and_failures_show_the_container_traceback(
        pytester: pytest.Pytester, tiny_qwen3_dir: Path, inner_record, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LOCALMAKER_ENDPOINT_URL", raising=False)
    record = inner_record("LOCALMAKER_SCOPE_RECORD", "scopes.jsonl")
    pytester.makeconftest(SHARED_CONFTEST)
    pytester.makepyfile(test_a=SHARING_MODULE, test_b=SHARING_MODULE, test_failing=FAILING_MODULE)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=600)

    result.assert_outcomes(passed=4, failed=2)
    records = _records(record)
    module_scoped = {(r["module"], r["endpoint"], r["pid"]) for r in records if r["scope"] == "module"}
    session_scoped = {(r["endpoint"], r["pid"]) for r in records if r["scope"] == "session"}
    assert len(records) == 8
    assert sorted(m for m, _, _ in module_scoped) == ["test_a", "test_b"]  # one endpoint, one instance per module
    assert len(session_scoped) == 1  # one for the four tests of both modules
    # pytest prints an error's message as "E       <line>"; the lines of the two failures, in order:
    shown = [line.removeprefix("E       ") for line in result.stdout.lines if line.startswith("E       ")]
    model_error = shown.index(next(line for line in shown if line.startswith("localmaker.errors.ModelError")))
    assert re.fullmatch(
        r"localmaker\.errors\.ModelError: An error occurred \(ModelError\) when calling the InvokeEndpoint "
        r"operation: Received server error \(500\) from endpoint 'test-a-500-[0-9a-f]{8}' with message "
        r"\"TypeError: unsupported operand type\(s\) for /: 'str' and 'int' \(the traceback is in the instance "
        r"log\)\"\. See the instance log \S+/logs/i-[0-9a-f]{17}\.log for more information\. Its traceback ends:",
        shown[model_error]), shown[model_error]
    assert re.fullmatch(r'  File "\S+/code/inference\.py", line 6, in predict_fn', shown[model_error + 1])
    assert shown[model_error + 2] == "    return data['inputs'] / 2"
    assert shown[model_error + 4] == "TypeError: unsupported operand type(s) for /: 'str' and 'int'"
    failed_deploy = shown.index(next(line for line in shown if line.startswith("localmaker.errors.DeploymentError")))
    assert re.fullmatch(
        r"localmaker\.errors\.DeploymentError: endpoint 'test-a-broken-model-fn-[0-9a-f]{8}' failed to start: "
        r"model_fn failed: KeyError: 'NOPE'\. See the instance log \S+/logs/i-[0-9a-f]{17}\.log for more "
        r"information\. Its traceback ends:", shown[failed_deploy]), shown[failed_deploy]
    assert re.fullmatch(r'  File "\S+/code/inference\.py", line 4, in model_fn', shown[failed_deploy + 1])
    assert shown[failed_deploy + 2] == "    return os.environ['NOPE']"
    assert shown[failed_deploy + 4] == "KeyError: 'NOPE'"
    # The failing line shown is the test's own; none of localmaker's frames is.
    result.stdout.fnmatch_lines([">       predictor.predict(*one sentence*)", "test_failing.py:8: ModelError",
                                 "test_failing.py:13: DeploymentError"])
    frames = [line for line in result.stdout.lines if re.match(r"^\S+\.py:\d+: ", line)]
    assert not [line for line in frames if "localmaker" in line], frames


@pytest.mark.e2e
def test_the_plugin_reuses_a_running_localmaker_up_and_starts_no_control_plane(
        pytester: pytest.Pytester, tiny_qwen3_dir: Path, localmaker_home: Path, inner_record):
    from tests.e2e.conftest import running_up

    record = inner_record("LOCALMAKER_SCOPE_RECORD", "scopes.jsonl")
    pytester.makeconftest(SHARED_CONFTEST)
    pytester.makepyfile(test_a=SHARING_MODULE)
    runs = localmaker_home / "runs"
    before = set(runs.glob("up-*")) if runs.exists() else set()

    with running_up() as (_process, url):
        result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--localmaker-endpoint-url={url}",
                                               timeout=600)
        from localmaker.deploy import Session

        left = Session(endpoint_url=url).sagemaker_client.list_endpoints()["Endpoints"]
    result.assert_outcomes(passed=2)
    records = _records(record)
    assert {r["control_plane"] for r in records} == {url}
    assert len({(r["scope"], r["endpoint"], r["pid"]) for r in records}) == 2  # a module's and the session's
    assert left == []  # the plugin deleted what it deployed on the shared control plane
    # The instances ran under `localmaker up` (its work folder holds their logs), not in a private one.
    (up_folder,) = set(runs.glob("up-*")) - before
    started = sorted(p.name.rsplit("-", 2)[0] for p in up_folder.iterdir() if (p / "logs").is_dir())
    assert started == ["session", "test-a-py"]


def test_a_control_plane_url_that_answers_nothing_fails_with_what_to_do(pytester: pytest.Pytester):
    pytester.makepyfile(test_attached="def test_deploys(localmaker_session):\n    pass\n")

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--localmaker-endpoint-url=http://127.0.0.1:9",
                                           timeout=120)

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no localmaker control plane answers at http://127.0.0.1:9 "
                                 "(--localmaker-endpoint-url, $LOCALMAKER_ENDPOINT_URL or localmaker_endpoint_url): "
                                 "*; start one with `localmaker up`, or leave the option out to start one for this "
                                 "session"])
