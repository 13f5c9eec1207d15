"""Pooling and vector post-processing against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.inference.handler_loader import sibling

pooling = sibling("embedding_pooling")

# batch 2, seq 3, hidden 2
STATES = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]],
    ]
)
RIGHT_PADDED = torch.tensor([[1, 1, 1], [1, 1, 0]])
LEFT_PADDED = torch.tensor([[1, 1, 1], [0, 1, 1]])


def test_mean_pool_ignores_padding() -> None:
    got = pooling.mean_pool(STATES, RIGHT_PADDED)
    assert torch.allclose(got, torch.tensor([[3.0, 4.0], [20.0, 30.0]]))
    got_left = pooling.mean_pool(STATES, LEFT_PADDED)
    assert torch.allclose(got_left, torch.tensor([[3.0, 4.0], [40.0, 50.0]]))


def test_last_token_with_right_padding_takes_last_real_token() -> None:
    got = pooling.last_token_pool(STATES, RIGHT_PADDED)
    assert torch.equal(got, torch.tensor([[5.0, 6.0], [30.0, 40.0]]))


def test_last_token_with_left_padding_takes_final_position() -> None:
    got = pooling.last_token_pool(STATES, LEFT_PADDED)
    assert torch.equal(got, torch.tensor([[5.0, 6.0], [50.0, 60.0]]))


def test_cls_takes_first_real_token_on_either_side() -> None:
    assert torch.equal(pooling.cls_pool(STATES, RIGHT_PADDED), torch.tensor([[1.0, 2.0], [10.0, 20.0]]))
    assert torch.equal(pooling.cls_pool(STATES, LEFT_PADDED), torch.tensor([[1.0, 2.0], [30.0, 40.0]]))


def test_pool_dispatches_and_rejects_unknown_modes() -> None:
    assert torch.equal(pooling.pool("cls", STATES, RIGHT_PADDED), pooling.cls_pool(STATES, RIGHT_PADDED))
    with pytest.raises(ValueError, match="max"):
        pooling.pool("max", STATES, RIGHT_PADDED)


def test_exclude_prompt_tokens_counts_from_first_real_token() -> None:
    assert torch.equal(pooling.exclude_prompt_tokens(RIGHT_PADDED, 1), torch.tensor([[0, 1, 1], [0, 1, 0]]))
    assert torch.equal(pooling.exclude_prompt_tokens(LEFT_PADDED, 1), torch.tensor([[0, 1, 1], [0, 0, 1]]))
    assert torch.equal(pooling.exclude_prompt_tokens(LEFT_PADDED, 0), LEFT_PADDED)


def test_l2_normalize_gives_unit_rows_and_keeps_zero_rows_finite() -> None:
    got = pooling.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(got, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)


def test_matryoshka_truncation_renormalises() -> None:
    vectors = np.array([[3.0, 4.0, 12.0]], dtype=np.float32)  # norm 13
    np.testing.assert_allclose(pooling.truncate_dimensions(vectors, 2), [[0.6, 0.8]], rtol=1e-6)
    np.testing.assert_allclose(pooling.truncate_dimensions(vectors, 2, normalize=False), [[3.0, 4.0]])
