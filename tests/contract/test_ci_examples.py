"""The CI examples are real: the contract-test commands in examples/ci/*.yml run here, as written.

Each YAML file is parsed, its ``localmaker contract-test`` lines are taken with the variables the file
sets (MODEL_SOURCE is tiny-qwen3, a source localmaker builds offline), and exactly those lines run in
bash with the installed ``localmaker`` script, from a folder that sees the repository's examples/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
CI = ROOT / "examples" / "ci"
COMMAND = "localmaker contract-test"


def _lines(script: str | list[str]) -> list[str]:
    lines = script if isinstance(script, list) else script.splitlines()
    return [line.strip() for line in lines if line.strip().startswith(COMMAND)]


def github_commands(workflow: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            env = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
            found += [(line, env) for line in _lines(step.get("run", ""))]
    return found


def gitlab_commands(pipeline: dict[str, Any]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for job in pipeline.values():
        if isinstance(job, dict) and "script" in job:
            env = {**pipeline.get("variables", {}), **job.get("variables", {})}
            found += [(line, env) for line in _lines(job["script"])]
    return found


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CI / name).read_text())


def test_both_ci_files_run_the_contract_test_and_publish_its_junit_report():
    github, gitlab = _load("github-actions.yml"), _load("gitlab-ci.yml")
    for commands in (github_commands(github), gitlab_commands(gitlab)):
        assert len(commands) == 1
        command, env = commands[0]
        assert "--junit-xml contract.xml" in command and env["MODEL_SOURCE"] == "tiny-qwen3"
    steps = github["jobs"]["contract-test"]["steps"]
    published = [step["with"]["report_paths"] for step in steps if "junit-report" in step.get("uses", "")]
    assert published == ["contract.xml"]
    assert gitlab["contract-test"]["artifacts"]["reports"]["junit"] == "contract.xml"
    installs = [step.get("run", "") for step in steps] + gitlab["contract-test"]["script"]
    assert sum("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in run for run in installs) == 2


def test_the_ci_contract_test_commands_pass_on_this_project(tmp_path, tiny_qwen3_dir):
    commands = dict.fromkeys((command, tuple(sorted(env.items())))
                             for command, env in github_commands(_load("github-actions.yml"))
                             + gitlab_commands(_load("gitlab-ci.yml")))
    assert commands
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the paths in the commands are repository-relative
    scripts = str(Path(sys.executable).parent)  # where `pip install` put the localmaker script
    for command, env in commands:
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, **dict(env), "PATH": scripts + os.pathsep + os.environ["PATH"]})
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        suite = ET.parse(tmp_path / "contract.xml").getroot().find("testsuite")
        assert suite is not None
        assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("11", "0", "0")
        assert "example: embed four dimensions" in {case.get("name") for case in suite.iter("testcase")}
        (tmp_path / "contract.xml").unlink()
