"""The GPU benchmark runs only on a lent GPU; its --smoke mode keeps every code path of it working in CI."""

from __future__ import annotations

import sys

import pytest

from benchmarks import gpu

pytestmark = pytest.mark.e2e


def test_the_gpu_benchmark_runs_end_to_end_at_tiny_size(monkeypatch, capsys, localmaker_home, tiny_sd_dir,
                                                        tiny_qwen3_dir):
    monkeypatch.setattr(sys, "argv", ["gpu", "--smoke", "--clients", "2", "--requests", "1"])
    monkeypatch.setenv("LOCALMAKER_DEVICE", "cpu")  # the benchmark sets it; this restores it afterwards
    gpu.main()
    printed = capsys.readouterr().out
    assert "| SD 64², 2 steps, 1 image (s) |" in printed
    assert "| embedding tokens/s, 64 texts," in printed
    assert printed.strip().splitlines()[-1].startswith("headline: SD latency")
