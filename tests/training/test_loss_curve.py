"""The loss curve's trend line."""

from __future__ import annotations

from tests.training.script_loader import sibling

loss_curve = sibling("loss_curve")


def test_moving_average_is_a_trailing_mean() -> None:
    assert loss_curve.moving_average([4.0, 2.0, 0.0, 2.0], 2) == [4.0, 3.0, 1.0, 1.0]
