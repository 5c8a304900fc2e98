"""The clip benchmark runs on the bundled RAV4 minute and its size/lossless targets hold.

Sizes are deterministic, so they are asserted here; speeds are only reported by the bench.
"""

from __future__ import annotations

import argparse

from shadowd.bench import clip as bench


def test_clip_bench_beats_row_zstd_by_2_5x_and_decodes_lossless():
    r = bench.run(argparse.Namespace(repeat=1, window_s=20.0, no_mcap=True))
    m = r["can_raw.minute"]
    assert m["frames"] == 135468 and m["d_raw_bytes"] == 135468 * 22
    assert m["ratio_row_zstd3_over_clip"] >= 2.5
    assert m["a_shadowd_clip"]["bytes"] < 440_000  # the design brief's quick columnar layout
    assert r["targets"]["lossless"] is True
    assert r["all_streams.windows_20s"]["a_shadowd_clip"]["lossless_at_declared_precision"]
