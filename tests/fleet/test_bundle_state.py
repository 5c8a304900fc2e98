"""core/bundle_state.py: admission order, anti-rollback, probation, as values in and out."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.bundle_state import (REFUSAL_REASONS, ApplyState, ProbationMonitor, Slot, VehicleIdentity,
                                       activate, admit, commit, fall_back, restarted,
                                       rollback)
from shadowd.core.config import parse_config
from shadowd.errors import ConfigError

ME = VehicleIdentity("veh-7", "nt2", "eu-test")


def cfg(version=5, targets=None, probation_s=60.0, **budgets):
    return parse_config({
        "version": version, "not_before": "2027-01-15T00:00:00Z", "expires": "2027-01-16T00:00:00Z",
        "targets": targets or {"fleets": ["eu-test"]}, "model": {"sha256": "a" * 64, "file_name": "m.onnx"},
        "probation_s": probation_s, "budgets": budgets})


NOW = 1_800_000_000  # 2027-01-15T08:00:00Z, inside the window above


@pytest.mark.parametrize("state, config, now, reason", [
    (ApplyState(highest_version=5), cfg(5), NOW, "replayed_version"),
    (ApplyState(highest_version=9), cfg(5), NOW, "replayed_version"),
    (ApplyState(), cfg(5), 1_799_971_199, "not_yet_valid"),
    (ApplyState(), cfg(5), 1_800_057_600, "expired"),
    (ApplyState(), cfg(5, {"platforms": ["nt3"]}), NOW, "wrong_target"),
    (ApplyState(), cfg(5, {"vehicles": ["veh-8"]}), NOW, "wrong_target"),
    (ApplyState(), cfg(5, {"platforms": ["nt2"], "fleets": ["us"]}), NOW, "wrong_target"),
])
def test_admit_refuses_with_named_reason(state, config, now, reason):
    verdict = admit(state, config, "f" * 64, ME, now)
    assert verdict.refused and verdict.reason == reason
    assert reason in REFUSAL_REASONS
    assert verdict.detail


def test_admit_checks_anti_rollback_before_validity():
    # an old, expired bundle is reported as what it is first: a replay
    verdict = admit(ApplyState(highest_version=5), cfg(3), "f" * 64, ME, 1_900_000_000)
    assert verdict.reason == "replayed_version"


def test_admit_accepts_targeted_vehicle_inside_window():
    verdict = admit(ApplyState(highest_version=4), cfg(5, {"platforms": ["nt2"], "vehicles": ["veh-7"]}),
                    "f" * 64, ME, NOW)
    assert verdict.outcome == "admitted" and verdict.reason is None


def test_active_bundle_offered_again_is_unchanged_not_refused():
    state = activate(ApplyState(), Slot(5, "f" * 64), probation_s=0)
    verdict = admit(state, cfg(5), "f" * 64, ME, NOW)
    assert verdict.outcome == "unchanged"


def test_probation_passes_then_becomes_last_known_good():
    state = activate(ApplyState(), Slot(5, "a" * 64), probation_s=60)
    assert state.probation == Slot(5, "a" * 64) and state.last_good is None
    monitor = ProbationMonitor(cfg(5, probation_s=60), started_ns=0)
    assert monitor.tick(59 * 10**9) is None
    decision = monitor.tick(60 * 10**9)
    assert decision.action == "commit"
    state = commit(state)
    assert state.last_good == Slot(5, "a" * 64) and state.probation is None
    assert monitor.tick(61 * 10**9) is None  # decided once


def test_model_errors_at_the_limit_roll_back_and_keep_the_version_burnt():
    good = commit(activate(ApplyState(), Slot(4, "b" * 64), 60))
    state = activate(good, Slot(5, "a" * 64), 60)
    monitor = ProbationMonitor(cfg(5, max_model_errors=3), started_ns=0)
    assert monitor.record("model_error", 1) is None
    assert monitor.record("model_error", 2) is None
    decision = monitor.record("model_error", 3, "onnxruntime: bad shape")
    assert decision.action == "rollback" and decision.reason == "model_error"
    assert "3 model_error" in decision.detail and "bad shape" in decision.detail
    state = rollback(state)
    assert state.active == Slot(4, "b" * 64)
    assert state.highest_version == 5
    assert admit(state, cfg(5), "a" * 64, ME, NOW).reason == "replayed_version"


def test_health_events_after_the_deadline_do_not_roll_back():
    monitor = ProbationMonitor(cfg(5, probation_s=10, max_stage_crashes=1), started_ns=0)
    decision = monitor.record("stage_crash", 10 * 10**9)
    assert decision.action == "commit"


def test_unknown_health_event_is_refused():
    with pytest.raises(ConfigError, match="unknown"):
        ProbationMonitor(cfg(5), 0).record("cosmic_ray", 1)


def test_restarts_during_probation_beyond_limit_roll_back():
    state = activate(ApplyState(), Slot(5, "a" * 64), 60)
    state, must = restarted(state, max_restarts=2)
    assert not must
    state, must = restarted(state, max_restarts=2)
    assert not must
    state, must = restarted(state, max_restarts=2)
    assert must and state.probation_restarts == 3


def test_restart_outside_probation_counts_nothing():
    state = commit(activate(ApplyState(), Slot(5, "a" * 64), 60))
    assert restarted(state, 0) == (state, False)


def test_committed_configs_are_kept_as_fallbacks_newest_first():
    state = ApplyState()
    for v in (1, 2, 3, 4):
        state = commit(activate(state, Slot(v, f"{v:064x}"), 60))
    assert state.last_good.version == 4
    assert [s.version for s in state.fallbacks()] == [3, 2]  # active (4) excluded, capped
    state = fall_back(state, Slot(2, f"{2:064x}"))
    assert state.active.version == 2 and state.last_good.version == 2
    assert [s.version for s in state.earlier_good] == [3]
    assert state.highest_version == 4
    with pytest.raises(ConfigError, match="not a known good"):
        fall_back(state, Slot(9, "0" * 64))


def test_activate_refuses_a_version_not_above_the_highest():
    with pytest.raises(ConfigError, match="not above"):
        activate(ApplyState(highest_version=5), Slot(5, "a" * 64), 60)


def test_apply_state_round_trips_and_refuses_corruption():
    state = activate(commit(activate(ApplyState(), Slot(4, "b" * 64), 60)), Slot(5, "a" * 64), 60)
    assert ApplyState.from_dict(state.to_dict()) == state
    with pytest.raises(ConfigError, match="highest_version"):
        ApplyState.from_dict({"active": None})
    with pytest.raises(ConfigError, match="active"):
        ApplyState.from_dict({"highest_version": 3, "active": {"version": "3"}})


# --- property: whatever happens, versions only go up and rollback lands on a known good ----

ops = st.lists(st.one_of(
    st.tuples(st.just("offer"), st.integers(1, 30)),
    st.tuples(st.just("commit"), st.none()),
    st.tuples(st.just("rollback"), st.none()),
    st.tuples(st.just("restart"), st.integers(0, 3)),
), max_size=40)


@given(ops)
def test_activated_versions_strictly_increase_and_rollback_targets_a_committed_slot(sequence):
    state = ApplyState()
    activated: list[int] = []
    committed: set[Slot] = set()
    for op, arg in sequence:
        before = state.highest_version
        if op == "offer":
            verdict = admit(state, cfg(arg), f"{arg:064x}", ME, NOW)
            if verdict.outcome == "admitted":
                state = activate(state, Slot(arg, f"{arg:064x}"), probation_s=60)
                activated.append(arg)
            else:
                assert verdict.outcome == "unchanged" or arg <= before
        elif op == "commit":
            state = commit(state)
            if state.last_good:
                committed.add(state.last_good)
        elif op == "rollback" and state.probation is not None:
            state = rollback(state)
            assert state.active is None or state.active in committed
        elif op == "restart":
            state, must = restarted(state, arg)
            if must:
                state = rollback(state)
                assert state.active is None or state.active in committed
        assert state.highest_version >= before
    assert activated == sorted(set(activated))
