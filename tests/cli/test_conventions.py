"""The conventions a shell user relies on, run as a user runs the command: --version, exit status 2 only
for a command line argparse refuses and 1 for a run that fails, and quiet when a pipe closes early."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from localmaker.control_plane.instance_process import free_port

CLI = [sys.executable, "-m", "localmaker.cli"]
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _user_env(**extra: str) -> dict[str, str]:
    """A user's shell: no AWS endpoint exported, and stdout buffered as it is outside this test run
    (PYTHONUNBUFFERED would hide the broken pipe that a buffered flush at exit meets)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONUNBUFFERED"}
    return {**env, **extra}


def _run(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60, env=_user_env(**env))


def test_version_prints_the_package_version():
    expected = re.search(r'^version = "(.+)"$', PYPROJECT.read_text(), flags=re.MULTILINE).group(1)
    done = _run("--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"localmaker {expected}\n", "")


USAGE_ERRORS = [
    (["deploy", "tiny-qwen3"], "the following arguments are required: --endpoint-name"),
    (["deploy", "tiny-qwen3", "--endpoint-name", "e", "--instance-count", "0"], "--instance-count: 0 is out of range"),
    (["update", "e"], "give what changes: --model, --instance-type or --instance-count"),
    (["update", "e", "--instance-count", "2", "--env", "A=1"], "--env, --entry-point and --source-dir describe a "
                                                               "new model: give it with --model"),
    (["deploy", "m", "--endpoint-name", "e", "--env", "novalue"], "'novalue' is not KEY=VALUE"),
    (["deploy", "m", "--endpoint-name", "e", "--env", "=value"], "'=value' is not KEY=VALUE"),
    (["invoke", "e", "--body", "{}", "--json", "--json=yes"], "ignored explicit argument 'yes'"),
    (["describe"], "the following arguments are required: name"),
    (["no-such-command"], "invalid choice: 'no-such-command'"),
]


@pytest.mark.parametrize(("argv", "message"), USAGE_ERRORS, ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_a_command_line_argparse_refuses_exits_2(argv, message):
    done = _run(*argv)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr


def test_runtime_failures_exit_1_with_one_error_line(tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cases = [
        (["describe", "e", "--endpoint-url", unreachable],
         f'localmaker: error: Could not connect to the endpoint URL: "{unreachable}/"\n'),
        (["endpoints"], "localmaker: error: no control plane to talk to: start `localmaker up` and pass "
                        "--endpoint-url or set AWS_ENDPOINT_URL to the address it printed\n"),
        (["invoke", "e", "--body", f"@{tmp_path / 'missing.json'}"],
         f"localmaker: error: [Errno 2] No such file or directory: '{tmp_path / 'missing.json'}'\n"),
        (["pack", "no-such-model", "-o", str(tmp_path / "m.tar.gz")], "localmaker: error: unknown model source "
                                                                      "'no-such-model': expected"),
    ]
    for argv, error in cases:
        done = _run(*argv)
        assert (done.returncode, done.stdout) == (1, ""), (argv, done.stderr)
        assert done.stderr.startswith(error), (argv, done.stderr)
        assert "Traceback" not in done.stderr


def run_into_a_closed_pipe(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Runs the command with stdout a real pipe whose reader has already gone, as `| head -1` leaves it."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        return subprocess.run([*CLI, *argv], stdout=writer, stderr=subprocess.PIPE, text=True, timeout=60,
                              env=_user_env(**env))
    finally:
        os.close(writer)


@pytest.mark.parametrize("argv", [["--help"], ["openapi", "-o", "-"]], ids=["--help", "openapi -o -"])
def test_a_closed_pipe_ends_the_command_quietly(argv):
    done = run_into_a_closed_pipe(argv)
    assert (done.returncode, done.stderr) == (1, "")  # not "Exception ignored ... BrokenPipeError", not exit 120


def test_piping_into_head_prints_the_first_line_only():
    done = subprocess.run(" ".join([*CLI, "--help"]) + " | head -1", shell=True, capture_output=True, text=True,
                          timeout=60, env=_user_env())
    assert (done.returncode, done.stdout, done.stderr) == (0, "usage: localmaker [-h] [--version] [-v] COMMAND ...\n",
                                                           "")
