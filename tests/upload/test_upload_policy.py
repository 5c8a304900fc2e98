"""The pure upload policy: token bucket, backoff, budget, gating, order with aging, expiry, config."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.upload_policy import (
    DailyBudget,
    NetworkState,
    QueuedClip,
    TokenBucket,
    UploadConfig,
    backoff_s,
    effective_priority,
    is_expired,
    network_allows,
    upload_order,
)
from shadowd.errors import ConfigError

# ------------------------------------------------------------------------------ token bucket

_steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.0, allow_nan=False), st.integers(0, 2_000_000)),
    min_size=1, max_size=60,
)


@given(rate=st.integers(1_000, 10_000_000), burst=st.integers(1, 1_000_000), steps=_steps)
def test_token_bucket_never_grants_more_than_burst_plus_rate_times_elapsed(rate, burst, steps):
    bucket = TokenBucket(rate, burst, now_mono_s=0.0)
    t = 0.0
    granted = 0
    for dt, want in steps:
        t += dt
        g = bucket.take(want, t)
        assert 0 <= g <= want
        granted += g
        assert granted <= burst + rate * t + 1e-6 * rate  # float slack on the refill product


@given(rate=st.integers(1_000, 10_000_000), burst=st.integers(1, 1_000_000),
       want=st.integers(1, 5_000_000), t0=st.floats(0, 100, allow_nan=False))
def test_token_bucket_grants_what_wait_s_promised(rate, burst, want, t0):
    bucket = TokenBucket(rate, burst, now_mono_s=0.0)
    bucket.take(burst, 0.0)  # empty it
    wait = bucket.wait_s(want, t0)
    got = bucket.take(want, t0 + wait + 1e-9)
    assert got >= min(want, burst) - 1  # float rounding may leave the last byte for later


@given(rate=st.integers(1_000, 10_000_000), burst=st.integers(1, 1_000_000),
       back=st.floats(0.001, 100, allow_nan=False))
def test_token_bucket_grants_nothing_for_a_clock_going_backwards(rate, burst, back):
    bucket = TokenBucket(rate, burst, now_mono_s=1000.0)
    bucket.take(burst, 1000.0)
    assert bucket.take(burst, 1000.0 - back) == 0
    assert bucket.available(1000.0 - back) == 0


def test_token_bucket_long_run_rate_matches_the_cap():
    bucket = TokenBucket(2_000_000, 65_536, now_mono_s=0.0)
    t, sent = 0.0, 0
    while t < 10.0:
        t += bucket.wait_s(65_536, t)
        sent += bucket.take(65_536, t)
    assert abs(sent / t - 2_000_000) / 2_000_000 < 0.01


def test_token_bucket_with_zero_rate_is_unlimited():
    bucket = TokenBucket(0, 0, now_mono_s=0.0)
    assert bucket.take(10**12, 0.0) == 10**12
    assert bucket.wait_s(10**12, 0.0) == 0


# ------------------------------------------------------------------------------ backoff

@given(attempt=st.integers(1, 10_000), base=st.floats(0.001, 100), cap_factor=st.floats(1, 1e6),
       u=st.floats(0, 1, exclude_max=True))
def test_backoff_stays_between_half_ceiling_and_ceiling(attempt, base, cap_factor, u):
    max_s = base * cap_factor
    ceiling = min(max_s, base * 2.0 ** min(attempt - 1, 1000))
    d = backoff_s(attempt, base, max_s, u)
    assert ceiling / 2 - 1e-9 <= d <= ceiling + 1e-9
    assert d <= max_s + 1e-9
    assert math.isfinite(d)


@given(attempt=st.integers(1, 60), base=st.floats(0.01, 10), u=st.floats(0, 1, exclude_max=True))
def test_backoff_ceiling_never_shrinks_with_more_attempts(attempt, base, u):
    max_s = 1000.0
    # the least possible delay of attempt n+1 is at least the least of attempt n
    assert backoff_s(attempt + 1, base, max_s, 0.0) >= backoff_s(attempt, base, max_s, 0.0)
    # equal jitter: the shortest delay two attempts later is never below any delay now,
    # until both sit at the cap
    if base * 2.0 ** (attempt + 1) <= max_s:
        assert backoff_s(attempt + 2, base, max_s, 0.0) >= backoff_s(attempt, base, max_s, u) - 1e-9


def test_backoff_jitter_spreads_retries_of_a_fleet():
    delays = {round(backoff_s(5, 1.0, 600.0, i / 100), 6) for i in range(100)}
    assert len(delays) == 100
    assert min(delays) >= 8.0 and max(delays) < 16.0


# ------------------------------------------------------------------------------ budget, gating, order, expiry

def test_daily_budget_refills_at_utc_midnight_and_bills_every_byte():
    budget = DailyBudget(1000)
    day0 = 20_000 * 86400.0
    budget.charge(700, day0 + 10)
    assert budget.remaining(day0 + 20) == 300
    budget.charge(400, day0 + 30)
    assert budget.remaining(day0 + 40) == 0  # overdraft never goes negative
    assert budget.next_day_s(day0 + 40) == day0 + 86400
    assert budget.remaining(day0 + 86400) == 1000


@pytest.mark.parametrize(
    "policy, state, allowed, reason",
    [
        ("always", NetworkState("cellular", metered=True, parked=False), True, ""),
        ("always", NetworkState("none"), False, "no_link"),
        ("never", NetworkState("ethernet", metered=False, parked=True), False, "policy_never"),
        ("unmetered_only", NetworkState("cellular", metered=True), False, "metered_link"),
        ("unmetered_only", NetworkState("wifi", metered=False, parked=False), True, ""),
        ("parked_only", NetworkState("cellular", metered=True, parked=False), False, "not_parked"),
        ("parked_only", NetworkState("cellular", metered=True, parked=True), True, ""),
        ("unmetered_and_parked", NetworkState("wifi", metered=False, parked=False), False, "not_parked"),
        ("unmetered_and_parked", NetworkState("wifi", metered=False, parked=True), True, ""),
    ],
)
def test_network_policy_gates_on_link_state(policy, state, allowed, reason):
    assert network_allows(policy, state) == (allowed, reason)


def test_network_state_refuses_an_unknown_link_kind():
    with pytest.raises(ConfigError, match="'lte'"):
        NetworkState("lte")


def test_upload_order_puts_high_priority_first_and_oldest_first_within_a_level():
    clips = [QueuedClip("a", 1, 10, 100.0), QueuedClip("b", 5, 10, 200.0), QueuedClip("c", 1, 10, 50.0)]
    assert [c.clip_id for c in upload_order(clips, 300.0, aging_s_per_level=0)] == ["b", "c", "a"]


@given(low=st.integers(0, 5), gap=st.integers(1, 5), aging=st.floats(1, 3600))
def test_aging_lifts_a_starved_low_priority_clip_above_a_fresh_high_one(low, gap, aging):
    now = 1e6
    waited = (gap + 1) * aging
    old_low = QueuedClip("old", low, 1, now - waited)
    fresh_high = QueuedClip("new", low + gap, 1, now)
    assert upload_order([fresh_high, old_low], now, aging)[0].clip_id == "old"
    assert effective_priority(low, 0, aging) == low


def test_expiry_drops_only_clips_older_than_max_age():
    assert not is_expired(100.0, 100.0 + 3600, max_age_s=3600)
    assert is_expired(100.0, 100.0 + 3600.5, max_age_s=3600)
    assert not is_expired(0.0, 1e12, max_age_s=0)


# ------------------------------------------------------------------------------ config

def test_every_bundled_platform_network_policy_is_an_upload_policy():
    import tomllib
    from pathlib import Path

    from shadowd.core import platform

    profiles = sorted((Path(__file__).resolve().parents[2] / "platforms").glob("*.toml"))
    assert profiles
    for path in profiles:
        policy = tomllib.loads(path.read_text())["network"]["policy"]
        UploadConfig.from_dict({"endpoint_url_template": "https://x/{clip_id}", "network_policy": policy})
    for policy in platform.NETWORK_POLICIES:  # and every policy a profile may name
        UploadConfig.from_dict({"endpoint_url_template": "https://x/{clip_id}", "network_policy": policy})


def test_config_from_dict_round_trips():
    cfg = UploadConfig.from_dict({
        "endpoint_url_template": "https://ingest.example/{vehicle_id}/{date}/{clip_id}.shdc",
        "vehicle_id": "VIN123", "bandwidth_bytes_per_s": 2_000_000, "pin_sha256": "AB" * 32,
        "network_policy": "unmetered_only", "max_age_s": 86400, "integrity_headers": ["content-md5"],
    })
    assert cfg.pin_sha256 == ("ab" * 32,)
    assert UploadConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"endpoint_url_template": "https://x/{vehicle_id}.shdc"}, "lacks {clip_id}"),
        ({"endpoint_url_template": "ftp://x/{clip_id}"}, "http:// or https://"),
        ({"endpoint_url_template": "https://x/{clipid}/{clip_id}"}, "unknown field"),
        ({"network_policy": "sometimes"}, "'sometimes'"),
        ({"bandwidth_bytes_per_s": -1}, "negative"),
        ({"bandwidth_bytes_per_s": "fast"}, "'fast' must be an integer"),
        ({"client_cert": "/c.pem"}, "together"),
        ({"pin_sha256": ["abc"]}, "64 lowercase hex"),
        ({"daily_budget_bytes": 1000, "part_size_bytes": 5000}, "smaller than one part"),
        ({"backoff_base_s": 10.0, "backoff_max_s": 1.0}, "backoff_base_s"),
        ({"integrity_headers": ["x-crc"]}, "'x-crc'"),
        ({"endpiont_url_template": "x"}, "unknown key"),
    ],
)
def test_config_refuses_bad_values_naming_key_and_value(patch, needle):
    d = {"endpoint_url_template": "https://ingest.example/{clip_id}"}
    d.update(patch)
    with pytest.raises(ConfigError, match=_re(needle)):
        UploadConfig.from_dict(d)


def _re(text: str) -> str:
    import re

    return re.escape(text)


def test_token_bucket_started_empty_grants_nothing_until_time_passes():
    bucket = TokenBucket(1_000_000, 250_000, now_mono_s=5.0, start_full=False)
    assert bucket.take(1, 5.0) == 0
    assert bucket.wait_s(250_000, 5.0) == 0.25
    assert bucket.take(250_000, 5.25) == 250_000


def test_token_bucket_catches_up_a_late_wakeup_within_its_burst():
    # the sender was descheduled for 200 ms; a 250 ms burst lets it make the time up
    bucket = TokenBucket(1_000_000, 250_000, now_mono_s=0.0, start_full=False)
    t, sent = 0.0, 0
    while t < 10.0:
        t += bucket.wait_s(50_000, t) + (0.2 if 4.0 < t < 4.1 else 0.0)
        sent += bucket.take(50_000, t)
    assert abs(sent / t - 1_000_000) / 1_000_000 < 0.01
