"""Bit-exact comparison of observer states (what exact merges promise)."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Bit-exact equality of two observer states (arrays by value and dtype, floats by ==)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"
