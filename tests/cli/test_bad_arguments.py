"""Bad command-line input ends with a one-line error, before any work, never a traceback: exit 2 when
argparse refuses it, 1 when the run finds it (a missing folder)."""

from __future__ import annotations

import pytest

from localmaker.cli import main

REFUSED_BY_ARGPARSE = [
    (["examples", "make-style-dataset", "d", "--count", "0"], "--count: 0 is out of range"),
    (["examples", "make-style-dataset", "d", "--seed", "-1"], "--seed: -1 is out of range"),
    (["examples", "make-style-dataset", "d", "--size", "8"], "--size: 8 is out of range"),
    (["sweep", "--model", "tiny-sd", "--prompt", "p", "-o", "sheet"], "has no image suffix"),
    (["sweep", "--model", "tiny-sd", "--prompt", "p", "--seed", str(2**32)], "--seed: 4294967296 is out of range"),
    (["contract-test", "tiny-qwen3", "--request-timeout", "0"], "not a positive number of seconds"),
    (["contract-test", "tiny-qwen3", "--request-timeout", "nan"], "not a positive number of seconds"),
    (["up", "--port", "70000"], "--port: 70000 is out of range"),
    (["serve", "m", "--workers", "0"], "--workers: 0 is out of range"),
]


@pytest.mark.parametrize(("argv", "message"), REFUSED_BY_ARGPARSE,
                         ids=[" ".join(argv[:3]) for argv, _ in REFUSED_BY_ARGPARSE])
def test_values_no_run_could_use_are_refused_at_parse_time(argv, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_file_that_is_not_there_is_an_error_line_not_a_traceback(tmp_path, capsys):
    assert main(["openapi", "-o", str(tmp_path / "no-such-folder" / "openapi.json")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("localmaker: error:") and "No such file or directory" in error


def test_an_output_in_a_missing_folder_is_refused_before_anything_is_deployed(tmp_path, capsys):
    target = tmp_path / "missing" / "sheet.png"
    assert main(["sweep", "--model", "no-such-model", "--prompt", "p", "-o", str(target)]) == 1
    assert "its folder does not exist" in capsys.readouterr().err  # not the unknown model: nothing ran
