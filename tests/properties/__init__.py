"""Property tests (hypothesis) for the codecs and the request validators.

The settings live here, applied per test, rather than in a profile that a conftest loads: a loaded profile is
global, and would silently change any other suite's hypothesis tests collected in the same run.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st


def bounded(max_examples: int) -> settings:
    """Reproducible and quick: the same examples on every run (derandomize), no deadline (a loaded CI machine
    is slow, not wrong), and no example database: with derandomize it would only replay what the seed already
    finds. (Hypothesis still caches source constants in ``.hypothesis/``, which it gitignores itself.)"""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def json_values(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """What json.loads can return, with finite floats (JSON has no NaN) and text that is Unicode (no lone
    surrogates, which UTF-8 cannot carry)."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    return st.recursive(
        scalars,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
        max_leaves=max_leaves,
    )


def assert_same_json(got: Any, expected: Any, path: str = "$") -> None:
    """Equal and of the same JSON types: plain ``==`` would accept ``True`` for ``1`` and ``1.0`` for ``1``."""
    assert type(got) is type(expected), f"{path}: {type(got).__name__} != {type(expected).__name__}"
    if isinstance(expected, dict):
        assert list(got) == list(expected), f"{path}: keys {list(got)} != {list(expected)}"
        for key in expected:
            assert_same_json(got[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), f"{path}: length {len(got)} != {len(expected)}"
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert_same_json(a, b, f"{path}[{i}]")
    elif isinstance(expected, float):
        # repr tells -0.0 from 0.0, which JSON keeps and == does not
        assert repr(got) == repr(expected), f"{path}: {got!r} != {expected!r}"
    else:
        assert got == expected, f"{path}: {got!r} != {expected!r}"
