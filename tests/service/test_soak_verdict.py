"""The soak's flatness verdict (``shadowd.bench.soak.judge_growth``) on synthetic RSS series.

No process and no clock: samples are built the way ``run_soak`` records them (one a wall
second, at 90x) with the shapes measured on the real service -- a bounded fill while the
session's traces reach their size, a saw from the allocator, upward spikes of clip building,
deep dips after a trim -- with and without a leak on top.
"""

from __future__ import annotations

import random

import pytest

from shadowd.bench.soak import WARMUP_ANSWERS, judge_growth, window_medians

SPEED = 90.0
ANSWERS_PER_S = 18.0  # what the service answers at 90x on the 2-core box


def _series(hours: float, *, leak_mb_per_h: float = 0.0, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    fill_s = WARMUP_ANSWERS / ANSWERS_PER_S  # the traces fill until the warm-up's answers
    out = []
    for wall in range(int(hours * 3600 / SPEED) + 1):
        driving_h = wall * SPEED / 3600
        rss = 140.0 + 10.0 * min(1.0, driving_h / 0.4)  # rings' shared pages, first clips
        rss += 7.0 * min(1.0, wall / fill_s)  # the bounded fill of the session traces (~1.2 MB/h)
        rss += 4.0 * ((wall % 30) / 30.0) - 2.0  # allocator saw between trims (30 s)
        rss += 2.5 if (wall // 200) % 2 else 0.0  # level shifts of the heap that last minutes
        rss += rng.uniform(-0.5, 0.5)
        if rng.random() < 0.06:
            rss += rng.uniform(5, 30)  # clip building
        if rng.random() < 0.04:
            rss -= rng.uniform(10, 20)  # a trim that found the heap top free
        rss += leak_mb_per_h * driving_h
        out.append({"wall_s": float(wall), "driving_h": driving_h, "answers": int(ANSWERS_PER_S * wall),
                    "rss_mb": rss})
    return out


@pytest.mark.parametrize("seed", range(6))
def test_saw_spikes_dips_and_a_bounded_fill_are_flat(seed):
    verdict = judge_growth(_series(8.0, seed=seed))
    assert verdict["verdict"] == "flat", verdict
    assert verdict["pass"] is True
    assert abs(verdict["growth_mb_per_driving_h"]) < 1.0
    assert verdict["warmup_end_driving_h"] == pytest.approx(WARMUP_ANSWERS / ANSWERS_PER_S * SPEED / 3600, abs=0.05)


@pytest.mark.parametrize("seed", range(6))
def test_a_leak_of_3_mb_per_hour_under_the_same_noise_is_growing(seed):
    verdict = judge_growth(_series(8.0, leak_mb_per_h=3.0, seed=seed))
    assert verdict["verdict"] == "growing", verdict
    assert verdict["pass"] is False
    assert verdict["growth_mb_per_driving_h"] == pytest.approx(3.0, abs=1.0)


def test_the_fill_before_the_warmup_ends_would_read_as_growth():
    """Why the warm-up waits for the answers: judged from 1 h on, the trace fill alone
    (7 MB over ~6 h at 90x) is a steady ~1.2 MB/h."""
    samples = _series(8.0)
    early = judge_growth(samples, warmup_answers=0, max_growth_mb_per_h=1.0)
    assert early["growth_mb_per_driving_h"] > 1.0
    assert judge_growth(samples, max_growth_mb_per_h=1.0)["verdict"] == "flat"


def test_a_drive_shorter_than_the_warmup_is_inconclusive_not_a_pass():
    verdict = judge_growth(_series(2.0, leak_mb_per_h=10.0))
    assert verdict["verdict"] == "inconclusive"
    assert verdict["pass"] is None
    assert "drive longer" in verdict["why"]
    short = judge_growth(_series(5.2, leak_mb_per_h=10.0))  # warm-up over, too little after it
    assert short["verdict"] == "inconclusive" and short["pass"] is None


def test_window_medians_ignore_spikes_and_dips():
    samples = [{"wall_s": float(t), "driving_h": t / 40.0, "rss_mb": 100.0} for t in range(40)]
    samples[3]["rss_mb"] = 160.0
    samples[14]["rss_mb"] = 60.0
    wins = window_medians(samples, window_s=10.0)
    assert [y for _, y in wins] == [100.0] * 4
    assert [round(x, 4) for x, _ in wins] == [0.1125, 0.3625, 0.6125, 0.8625]
