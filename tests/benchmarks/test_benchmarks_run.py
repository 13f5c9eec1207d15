"""The CPU benchmarks run end to end at a tiny size and print their table and headline.

No timing is asserted: on a shared 2-core machine the numbers are noise at this size. What is checked is
that each benchmark deploys, measures, prints a table whose last line names its target, and cleans up
(the run's leftover check fails the session if a server outlives it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from benchmarks import cold_start, embedding_throughput, overhead

pytestmark = pytest.mark.e2e


def _run(main: Callable[[Sequence[str]], None], argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    main(argv)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("machine: ")
    assert any(line.startswith("| ---") for line in lines), "no table was printed"
    assert "target" in lines[-1]
    return lines


def test_embedding_throughput_checks_the_endpoint_vectors(capsys, tiny_qwen3_dir: Path):
    # tiny-qwen3 rather than the default MiniLM: the same code paths, deployed in a fraction of the time.
    argv = ["--texts", "16", "--clients", "4", "--repeats", "1", "--model", str(tiny_qwen3_dir)]
    lines = _run(embedding_throughput.main, argv, capsys)

    assert lines[-1].startswith("endpoint / in-process batched = ")
    assert any(line.startswith("endpoint / batching off = ") for line in lines)
    assert any(line.startswith("embeddings equal the in-process ones (allclose") for line in lines)
    rows = [line for line in lines if line.startswith("| endpoint")]
    assert len(rows) == 2 and all(row.split("|")[5].strip() != "-" for row in rows), "no vector was compared"


def test_overhead_compares_the_endpoint_with_a_bare_server(capsys, localmaker_home: Path):
    lines = _run(overhead.main, ["--requests", "50", "--warmup", "10", "--rounds", "2"], capsys)

    assert lines[-1].startswith("p50 endpoint / bare = ")
    assert sum(1 for line in lines if line.startswith("| localmaker endpoint") or line.startswith("| bare")) == 2


def test_cold_start_times_both_paths(capsys, tiny_qwen3_dir: Path):
    lines = _run(cold_start.main, ["--repeats", "1", "--model", str(tiny_qwen3_dir)], capsys)

    assert lines[-1].startswith("deploy→first prediction = ")
    assert "X/(2Y+2)" in lines[-1]
