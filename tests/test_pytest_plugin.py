"""The pytest plugin as a user meets it: their own test module, run by a separate pytest process."""

from __future__ import annotations

import json
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


@pytest.mark.e2e
def test_a_user_test_module_deploys_predicts_and_tears_down_through_the_plugin(
        pytester: pytest.Pytester, tiny_qwen3_dir: Path, localmaker_home: Path, monkeypatch: pytest.MonkeyPatch):
    # The inner run must find tiny-qwen3 where this session built it, not build its own copy.
    monkeypatch.setenv("LOCALMAKER_HOME", str(localmaker_home))
    record = pytester.path / "instance-groups.txt"
    monkeypatch.setenv("LOCALMAKER_GROUP_RECORD", str(record))
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
