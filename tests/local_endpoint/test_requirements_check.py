"""code/requirements.txt: checked against what is installed, reported in the log and in ModelLoadFailed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from localmaker.local_endpoint.requirements_check import (
    NO_INSTALL_NOTE,
    Outcome,
    check_code_dir,
    check_line,
    check_text,
    explain_import_failure,
    logical_lines,
)

# A distribution that exists only in this test's sys.path, so its version is known exactly.
PROBE = "localmaker-probe-dist"
MISSING = "localmaker-absent-dist"


@pytest.fixture
def probe_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    site = tmp_path / "site"
    dist_info = site / "localmaker_probe_dist-1.2.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {PROBE}\nVersion: 1.2.0\n")
    monkeypatch.syspath_prepend(str(site))
    return "1.2.0"


def test_an_installed_distribution_in_range_is_satisfied(probe_installed):
    check = check_line(f"{PROBE}>=1.0,<2")
    assert check.outcome is Outcome.SATISFIED
    assert check.detail == probe_installed


def test_names_are_matched_as_pip_normalises_them(probe_installed):
    assert check_line("Localmaker_Probe.Dist==1.2.0").outcome is Outcome.SATISFIED


def test_a_distribution_that_is_not_installed_is_missing_with_what_to_install():
    check = check_line(f"{MISSING}[extra]>=1.2")
    assert check.outcome is Outcome.MISSING
    assert check.detail == "not installed"
    assert check.install_spec == f"{MISSING}[extra]>=1.2"


def test_an_installed_version_outside_the_specifier_is_the_wrong_version(probe_installed):
    check = check_line(f"{PROBE}>=2.0")
    assert check.outcome is Outcome.WRONG_VERSION
    assert check.detail == "1.2.0 installed"
    assert check.install_spec == f"{PROBE}>=2.0"


def test_a_false_marker_makes_a_requirement_not_apply_even_when_missing():
    check = check_line(f'{MISSING}>=1; sys_platform == "no-such-platform"')
    assert check.outcome is Outcome.NOT_APPLICABLE


def test_a_true_marker_is_checked_and_left_out_of_the_install_command():
    check = check_line(f'{MISSING}==3.0 ; python_version >= "3"')
    assert check.outcome is Outcome.MISSING
    assert check.install_spec == f"{MISSING}==3.0"


@pytest.mark.parametrize("line", [
    "-r base.txt",
    "--index-url https://pypi.example.com/simple",
    "-e git+https://github.com/org/repo#egg=repo",
    "git+https://github.com/org/repo@v1#egg=repo",
    "https://example.com/pkg-1.0.tar.gz",
    "./vendored/pkg",
    "pkg-1.0-py3-none-any.whl",
])
def test_options_urls_and_paths_are_skipped_not_guessed(line):
    check = check_line(line)
    assert check.outcome is Outcome.SKIPPED
    assert check.text == line


def test_a_direct_reference_is_checked_by_its_name():
    check = check_line(f"{MISSING} @ https://example.com/{MISSING}.whl")
    assert check.outcome is Outcome.MISSING
    assert check.install_spec == f"{MISSING} @ https://example.com/{MISSING}.whl"


def test_hash_options_after_a_requirement_are_ignored(probe_installed):
    check = check_line(f"{PROBE}==1.2.0 --hash=sha256:{'0' * 64}")
    assert check.outcome is Outcome.SATISFIED
    assert check.text == f"{PROBE}==1.2.0"


def test_comments_blank_lines_and_continuations_are_read_as_pip_reads_them():
    text = f"# pinned for the demo\n\n{PROBE}>=1.0  # inline comment\n{MISSING} \\\n  >=2\npkg#not-a-comment\n"
    assert logical_lines(text) == [f"{PROBE}>=1.0", f"{MISSING}   >=2", "pkg#not-a-comment"]


def test_a_malformed_line_is_reported_and_the_others_are_still_checked(probe_installed):
    report = check_text(f"{PROBE}=>1\n{PROBE}>=1\n{MISSING}\n")
    assert [check.outcome for check in report.checks] == [Outcome.MALFORMED, Outcome.SATISFIED, Outcome.MISSING]
    assert report.checks[0].text == f"{PROBE}=>1"
    assert report.checks[0].detail  # the parser's reason, not an empty string
    assert report.needs_attention


def test_the_summary_line_says_what_is_met_what_is_not_and_who_installs_it(probe_installed):
    report = check_text(f"{PROBE}>=1\n{PROBE}>=9\n{MISSING}>=1.2\n-r other.txt\n")
    line = report.summary_line()
    assert "\n" not in line
    assert f"satisfied: {PROBE}>=1 (1.2.0)" in line
    assert f"missing: {MISSING}>=1.2 (not installed)" in line
    assert f"wrong version: {PROBE}>=9 (1.2.0 installed)" in line
    assert "not checked: -r other.txt (pip option)" in line
    assert NO_INSTALL_NOTE in line
    assert f"pip install '{PROBE}>=9' '{MISSING}>=1.2'" in line  # in the file's order


def test_a_fully_satisfied_file_needs_no_attention(probe_installed):
    report = check_text(f"{PROBE}\n")
    assert not report.needs_attention
    assert report.unmet == []
    assert NO_INSTALL_NOTE in report.summary_line()


def test_code_without_requirements_has_no_report(tmp_path):
    assert check_code_dir(tmp_path) is None
    (tmp_path / "requirements.txt").write_text(f"{MISSING}\n")
    report = check_code_dir(tmp_path)
    assert report is not None and [c.outcome for c in report.checks] == [Outcome.MISSING]


def test_an_import_failure_names_the_module_the_unmet_requirements_and_the_fix():
    report = check_text(f"{MISSING}>=1.2\n")
    message = explain_import_failure(ModuleNotFoundError("No module named 'absent'", name="absent"), report)
    assert message.startswith("ModuleNotFoundError: No module named 'absent'")
    assert f"{MISSING}>=1.2 (not installed)" in message
    assert f"pip install '{MISSING}>=1.2'" in message
    assert "environment running localmaker" in message


def test_an_import_failure_without_unmet_requirements_still_says_how_to_fix_it():
    message = explain_import_failure(ModuleNotFoundError("No module named 'absent'", name="absent"), None)
    assert "'absent'" in message
    assert "code/requirements.txt" in message
    assert "environment running localmaker" in message


def test_an_import_failure_message_stays_inside_failure_reason_with_many_requirements():
    report = check_text("".join(f"{MISSING}-{i}>=1.0.{i}\n" for i in range(60)))
    error = ModuleNotFoundError("No module named 'absent' " + "x" * 2000, name="absent")
    message = explain_import_failure(error, report)
    assert len(message) < 850  # FailureReason keeps 1024, and "model_fn failed: " comes before this
    assert f"{MISSING}-0>=1.0.0 (not installed)" in message
    assert f"pip install '{MISSING}-0>=1.0.0'" in message
    assert message.count("more)") == 2  # the rest are counted, in the list and the command alike


# The container app: an import that fails because requirements.txt was not installed.

MISSING_MODULE = "localmaker_absent_module"


def _code_dir(tmp_path: Path) -> Path:
    code_dir = tmp_path / "model" / "code"  # where the script_app fixture writes inference.py
    code_dir.mkdir(parents=True, exist_ok=True)
    return code_dir


def test_ping_reports_a_script_whose_import_needs_an_uninstalled_requirement(script_app, tmp_path, caplog):
    (_code_dir(tmp_path) / "requirements.txt").write_text(f"{MISSING}>=1.2\nflask\n")
    caplog.set_level(logging.INFO, logger="localmaker.local_endpoint")
    client = script_app(f"""
        import {MISSING_MODULE}

        def model_fn(model_dir):
            return {MISSING_MODULE}.load(model_dir)
    """).test_client()
    response = client.get("/ping")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "ModelLoadFailed"
    message = error["message"]
    assert message.startswith(f"loading inference.py failed: ModuleNotFoundError: No module named '{MISSING_MODULE}'")
    assert f"{MISSING}>=1.2 (not installed)" in message
    assert f"pip install '{MISSING}>=1.2'" in message
    assert "flask" not in message  # installed, so not blamed
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("code/requirements.txt")]
    assert len(logged) == 1
    assert f"missing: {MISSING}>=1.2 (not installed)" in logged[0]
    assert "satisfied: flask (" in logged[0]


def test_an_import_inside_model_fn_is_explained_the_same_way(script_app, tmp_path):
    (_code_dir(tmp_path) / "requirements.txt").write_text(f"{MISSING}==0.1\n")
    client = script_app(f"""
        def model_fn(model_dir):
            import {MISSING_MODULE}
            return {MISSING_MODULE}
    """).test_client()
    message = client.get("/ping").get_json()["error"]["message"]
    assert message.startswith("model_fn failed: ModuleNotFoundError")
    assert f"pip install '{MISSING}==0.1'" in message


def test_satisfied_requirements_are_logged_and_the_model_serves(script_app, tmp_path, caplog):
    (_code_dir(tmp_path) / "requirements.txt").write_text("flask>=1.0\n")
    caplog.set_level(logging.INFO, logger="localmaker.local_endpoint")
    client = script_app("""
        def model_fn(model_dir):
            return "ready"
    """).test_client()
    assert client.get("/ping").status_code == 200
    logged = [r for r in caplog.records if r.getMessage().startswith("code/requirements.txt")]
    assert [r.levelno for r in logged] == [logging.INFO]
    assert "satisfied: flask>=1.0 (" in logged[0].getMessage()
