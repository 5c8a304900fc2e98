"""Alignment: zero-order hold and linear interpolation on integer-nanosecond times."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, strategies as st

from shadowd.core.align import sample

T = np.array([10, 20, 40], np.int64)
V = np.array([1.0, 2.0, 4.0])


def test_zero_order_hold_takes_the_latest_sample_at_or_before():
    np.testing.assert_array_equal(sample(T, V, np.array([5, 10, 19, 20, 39, 100]), "zoh"), [np.nan, 1, 1, 2, 2, 4])


def test_linear_interpolates_and_is_unknown_outside_the_samples():
    np.testing.assert_array_equal(sample(T, V, np.array([5, 10, 15, 30, 40, 41]), "linear"), [np.nan, 1, 1.5, 3, 4, np.nan])


def test_unknown_mode_and_empty_input():
    with pytest.raises(ValueError, match="unknown interpolation 'cubic'"):
        sample(T, V, np.array([15]), "cubic")
    assert np.isnan(sample(T[:0], V[:0], np.array([1, 2]), "zoh")).all()


@given(st.integers(0, 2**40), st.integers(1, 2), st.lists(st.integers(0, 10**6), min_size=2, max_size=20, unique=True))
def test_result_does_not_depend_on_dropped_older_samples(offset, drop, steps):
    t = np.array(sorted(steps), np.int64) + 46_000 * 10**9 + offset
    v = np.sin(np.arange(len(t)) * 0.7)
    q = np.linspace(t[min(drop, len(t) - 1)], t[-1], 17).astype(np.int64)
    k = min(drop, len(t) - 1)
    for mode in ("linear", "zoh"):
        np.testing.assert_array_equal(sample(t, v, q, mode), sample(t[k:], v[k:], q, mode))
