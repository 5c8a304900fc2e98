"""Stateful property test: a ConfigManager on a real state dir, driven through random pushes,
health events, time and restarts, never lowers its anti-rollback floor, never runs a version
twice, and after a rollback runs a config that had passed probation (or none)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.fleet.conftest import Fleet


class ConfigLifecycle(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="shadowd-fleet-sm-")
        self.fleet = Fleet(Path(self._tmp.name))
        self.fleet.install_model()
        self.manager = self.fleet.manager()
        self.manager.startup()
        self.bundles: dict[int, bytes] = {}
        self.activated: list[int] = []
        self.committed: set[int] = set()
        self.floor = 0

    def _bundle(self, version: int) -> bytes:
        if version not in self.bundles:
            self.bundles[version] = self.fleet.bundle(version, probation_s=10,
                                                      budgets={"max_model_errors": 2, "max_stage_crashes": 1})
        return self.bundles[version]

    @rule(version=st.integers(1, 12))
    def push(self, version):
        result = self.manager.apply(self._bundle(version), "push")
        if result.outcome == "applied":
            assert version > self.floor
            self.activated.append(version)
            self.floor = version
        elif result.outcome == "refused":
            assert result.reason == "replayed_version" and version <= self.floor
        else:
            assert result.outcome == "unchanged" and self.manager.status()["active_version"] == version

    @rule(kind=st.sampled_from(["model_error", "budget_overrun", "stage_crash"]))
    def health(self, kind):
        rolled = self.manager.report_health(kind, "sm")
        if rolled is not None:
            assert rolled.to_version is None or rolled.to_version in self.committed
            # what the service is told to swap to is exactly the config on record
            assert (rolled.prepared.version if rolled.prepared else None) == rolled.to_version
            assert self.manager.status()["active_version"] == rolled.to_version

    @rule(seconds=st.sampled_from([1, 5, 11]))
    def time_passes(self, seconds):
        probation = self.manager.status()["probation_version"]
        self.fleet.clock.advance(seconds)
        self.manager.tick()
        if probation is not None and self.manager.status()["last_good_version"] == probation:
            self.committed.add(probation)

    @precondition(lambda self: self.activated)
    @rule()
    def restart(self):
        self.manager.close()
        self.manager = self.fleet.manager()
        prepared = self.manager.startup()
        active = self.manager.status()["active_version"]
        assert (prepared is None) == (active is None)

    @invariant()
    def floor_is_persisted_and_never_lowered(self):
        status = self.manager.status()
        assert status["highest_version"] == self.floor
        active = status["active_version"]
        assert active is None or active in self.activated
        if status["probation_version"] is None and active is not None and active != self.floor:
            assert active in self.committed  # anything but the newest must have passed probation

    def teardown(self):
        self.manager.close()
        self._tmp.cleanup()


ConfigLifecycle.TestCase.settings = settings(max_examples=400 if os.environ.get("SHADOWD_SLOW_TESTS") else 80,
                                             stateful_step_count=20, deadline=None)
test_config_lifecycle = ConfigLifecycle.TestCase
