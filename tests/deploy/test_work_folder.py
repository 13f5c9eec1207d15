"""A session's /tmp/localmaker-* work folder is removed when the session closes, unless asked to stay; a
kept one is named in one line, and a folder the caller chose is never touched."""

from __future__ import annotations

import tempfile

import pytest

from localmaker.deploy import Session


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Where tempfile makes /tmp/localmaker-*, so that what is left behind can be counted."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("LOCALMAKER_KEEP_WORK", raising=False)
    return tmp_path


def test_closing_the_session_removes_its_work_folder_silently(scratch, capsys):
    with Session() as session:
        session.default_bucket()  # the control plane answered, and wrote its log into the folder
        assert len(list(scratch.glob("localmaker-*/control-plane.log"))) == 1

    assert list(scratch.glob("localmaker-*")) == []
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("ask", ["argument", "environment"])
def test_a_kept_work_folder_stays_and_is_named(scratch, capsys, monkeypatch, ask):
    if ask == "environment":
        monkeypatch.setenv("LOCALMAKER_KEEP_WORK", "1")
    with Session(keep_work=True if ask == "argument" else None):
        pass

    (kept,) = scratch.glob("localmaker-*")
    assert capsys.readouterr().err == f"[localmaker] kept work folder {kept}\n"
    assert (kept / "control-plane.log").is_file()


def test_a_work_root_the_caller_chose_is_theirs(scratch, capsys):
    chosen = scratch / "mine"
    with Session(work_root=chosen):
        pass

    assert (chosen / "control-plane.log").is_file()
    assert capsys.readouterr().err == ""
