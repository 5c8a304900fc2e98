"""Fleet test helpers: a signing key and trust dir, a contract-honouring model, bundle factory,
and a ConfigManager on a temp state dir with injected clocks (time is an argument, not a mock)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shadowd.bench.fleet import bench_config, build_tiny_model
from shadowd.core.bundle_state import VehicleIdentity
from shadowd.edges.bundle import generate_keypair, load_private_key, sha256_file, sign_bundle
from shadowd.edges.config_apply import ConfigManager
from shadowd.edges.platforms import load_platform

NOW_S = 1_800_000_000  # 2027-01-15T08:00:00Z: the vehicle's wall clock in these tests


@dataclass
class Clock:
    """Wall (Unix s) and monotonic (ns) time the tests move by hand."""

    wall_s: float = NOW_S
    mono_ns: int = 1_000_000_000

    def advance(self, seconds: float) -> None:
        self.wall_s += seconds
        self.mono_ns += int(seconds * 1e9)


@dataclass
class Fleet:
    """One fleet backend (keys, model) and one vehicle (state dir, trust dir, identity)."""

    root: Path
    clock: Clock = field(default_factory=Clock)
    identity: VehicleIdentity = VehicleIdentity("veh-001", "desktop", "eu-test")

    def __post_init__(self):
        self.keys = self.root / "backend-keys"
        self.trust = self.root / "vehicle" / "keys"
        self.state = self.root / "vehicle"
        self.trust.mkdir(parents=True)
        self.key_id = "fleet-a"
        self.add_key("fleet-a")
        self.model = build_tiny_model(self.root / "candidate.onnx")
        self.platform = load_platform("desktop")

    def add_key(self, key_id: str, *, trust: bool = True):
        priv, pub = generate_keypair(self.keys, key_id)
        if trust:
            shutil.copy(pub, self.trust / pub.name)
        return load_private_key(priv)

    def config(self, version: int, model: Path | None = None, **overrides) -> dict:
        cfg = bench_config(version, model or self.model, fleet="eu-test", now_s=self.clock.wall_s)
        cfg.update(overrides)
        return cfg

    def bundle(self, version: int, *, key_id: str | None = None, model: Path | None = None, **overrides) -> bytes:
        key_id = key_id or self.key_id
        key = load_private_key(self.keys / f"{key_id}.key")
        return sign_bundle(self.config(version, model, **overrides), key, key_id)

    def install_model(self, model: Path | None = None) -> Path:
        """Put a model in the vehicle's store, as a delivery before the bundle would."""
        model = model or self.model
        dest = self.state / "models" / f"{sha256_file(model)}.onnx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model, dest)
        return dest

    def manager(self, **kw) -> ConfigManager:
        return ConfigManager(self.state, self.trust, kw.pop("identity", self.identity),
                             kw.pop("platform", self.platform), wall_clock_s=lambda: self.clock.wall_s,
                             mono_clock_ns=lambda: self.clock.mono_ns, **kw)


@pytest.fixture
def fleet(tmp_path) -> Fleet:
    return Fleet(tmp_path)
