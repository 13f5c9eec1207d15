"""Fixtures for the contract tests: the broken handlers kept on disk, and one control plane for the
in-process runs (each run deploys its own endpoint on it and deletes it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ECHO_MODEL = FIXTURES / "echo-model"
HANDLERS = FIXTURES / "handlers"


@pytest.fixture(scope="module")
def contract_session(tmp_path_factory: pytest.TempPathFactory, localmaker_home: Path) -> Iterator[object]:
    from localmaker.deploy import Session

    with Session(work_root=tmp_path_factory.mktemp("contract-control-plane"), startup_timeout_s=180) as session:
        yield session
