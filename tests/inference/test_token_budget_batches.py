"""How gathered texts are cut into forward passes: longest first, under the row and token budgets, and
without rows much shorter than their batch's longest."""

from __future__ import annotations

import random

from tests.inference.handler_loader import sibling

embedding_model = sibling("embedding_model")
token_budget_batches = embedding_model.token_budget_batches


def test_every_text_lands_in_exactly_one_batch_within_both_budgets():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(500)]
    batches = token_budget_batches(lengths, max_rows=32, max_tokens=2048)
    assert sorted(i for batch in batches for i in batch) == list(range(500))
    for batch in batches:
        widths = [lengths[i] for i in batch]
        assert widths == sorted(widths, reverse=True)  # the first row sets the padded width
        assert len(batch) <= 32
        assert len(batch) == 1 or widths[0] * len(batch) <= 2048
        assert min(widths) >= embedding_model.MIN_FILL * widths[0]


def test_a_text_over_the_budget_gets_a_batch_of_its_own():
    assert token_budget_batches([5000, 10, 10], max_rows=32, max_tokens=1024) == [[0], [1, 2]]


def test_similar_lengths_share_a_batch_and_a_short_one_does_not_pad_to_a_long_one():
    assert token_budget_batches([100, 95, 90, 20], max_rows=32, max_tokens=10_000) == [[0, 1, 2], [3]]


def test_a_packed_encoder_keeps_short_texts_with_long_ones():
    """Packed, a short row costs only its own tokens, so nothing is gained by a pass of its own."""
    assert token_budget_batches([100, 95, 90, 20], max_rows=32, max_tokens=10_000, min_fill=0.0) == [[0, 1, 2, 3]]
    assert token_budget_batches([100, 95, 90, 20], max_rows=2, max_tokens=10_000, min_fill=0.0) == [[0, 1], [2, 3]]
