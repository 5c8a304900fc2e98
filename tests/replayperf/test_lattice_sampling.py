"""``align.sample_lattice`` (each distinct query instant sampled once, then gathered) gives
exactly ``align.sample`` on the full (rows x offsets) grid, bit for bit, for both
interpolations, on lattices and off them (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.align import lattice, sample, sample_lattice

_times = st.lists(st.integers(-10**12, 10**12), min_size=0, max_size=40, unique=True).map(sorted)


@settings(max_examples=200, deadline=None)
@given(
    t_ns=_times,
    seed=st.integers(0, 2**31),
    step=st.sampled_from([1, 7, 10_000_000, 50_000_000]),
    rows=st.lists(st.integers(0, 400), min_size=0, max_size=30),
    offs=st.lists(st.integers(-40, 40), min_size=1, max_size=20),
    jitter=st.booleans(),
    interp=st.sampled_from(["zoh", "linear"]),
)
def test_lattice_sampling_equals_sampling_every_query(t_ns, seed, step, rows, offs, jitter, interp):
    rng = np.random.default_rng(seed)
    t = np.array(t_ns, np.int64) * 1000
    values = rng.normal(size=len(t))
    if len(values) > 2:
        values[rng.integers(0, len(values))] = np.nan  # a gap in the signal stays a gap
    t0 = np.array(rows, np.int64) * step + int(rng.integers(-10**9, 10**9))
    if jitter and len(t0):
        t0[rng.integers(0, len(t0))] += 3  # off the lattice: the gcd shrinks or it falls back
    offsets = np.array(offs, np.int64) * step
    want = sample(t, values, t0[:, None] + offsets[None, :], interp)
    got = sample_lattice(t, values, t0, offsets, interp)
    assert got.shape == want.shape
    assert got.tobytes() == want.tobytes()
    # one lattice shared by several signals of the topic (model windows, the scorer)
    grid = lattice(t0, offsets)
    instants, gather = grid
    assert (instants if gather is None else instants[gather]).tolist() == (t0[:, None] + offsets[None, :]).tolist()
    for column in (values, -2.0 * values):
        shared = sample_lattice(t, column, t0, offsets, interp, grid)
        assert shared.tobytes() == sample(t, column, t0[:, None] + offsets[None, :], interp).tobytes()


def test_a_minute_of_model_windows_matches_the_full_grid():
    t = np.arange(0, 60_000_000_000, 50_000_000, dtype=np.int64)  # 20 Hz for a minute
    v = np.sin(np.arange(len(t)) / 7.0)
    ticks = np.arange(1_000_000_000, 59_000_000_000, 50_000_000, dtype=np.int64)  # a request per 50 ms
    offsets = np.arange(-19, 1, dtype=np.int64) * 50_000_000  # a 1 s window
    got = sample_lattice(t, v, ticks, offsets, "linear")
    assert got.tobytes() == sample(t, v, ticks[:, None] + offsets[None, :], "linear").tobytes()
    assert got.shape == (len(ticks), len(offsets))
