"""systemd/: the units pass `systemd-analyze verify` and `security --offline=yes` (exposure OK or
better), and tmpfiles.d / sysusers.d really create the user and directories (in a temp root)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "systemd"
PLATFORM_DROPINS = sorted((UNITS / "platform.d").glob("*.conf"))
EXPOSURE_RE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) (\w+)")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup installs the systemd package)")
    return path


def _shadowd_binary() -> str:
    """The real shadowd entry point of this checkout (ExecStart must name an existing file)."""
    candidate = Path(sys.executable).parent / "shadowd"
    return str(candidate) if candidate.exists() else shutil.which("shadowd") or pytest.skip("no shadowd binary")


def _staged(tmp_path: Path, dropin: Path | None = None) -> Path:
    """Copy the units into tmp_path with ExecStart pointing at this checkout's shadowd."""
    for unit in ("shadowd.service", "shadowd-config.path", "shadowd-config.service"):
        text = (UNITS / unit).read_text().replace("/usr/bin/shadowd", _shadowd_binary())
        (tmp_path / unit).write_text(text)
    if dropin is not None:
        d = tmp_path / "shadowd.service.d"
        d.mkdir()
        shutil.copy(dropin, d / "platform.conf")
    return tmp_path


def _verify(directory: Path, *units: str) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("systemd-analyze"), "verify", "--man=no", "--recursive-errors=no",
                           *[f"./{u}" for u in units]], cwd=directory, capture_output=True, text=True, timeout=60)


def test_units_pass_systemd_analyze_verify_without_any_warning(tmp_path):
    result = _verify(_staged(tmp_path), "shadowd.service", "shadowd-config.path", "shadowd-config.service")
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("dropin", PLATFORM_DROPINS, ids=lambda p: p.stem)
def test_platform_dropin_passes_verify(tmp_path, dropin):
    result = _verify(_staged(tmp_path, dropin), "shadowd.service")
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_verify_catches_a_misspelt_directive(tmp_path):
    # the check above can fail: a typo in a unit is reported
    directory = _staged(tmp_path)
    unit = directory / "shadowd.service"
    unit.write_text(unit.read_text().replace("PrivateTmp=yes", "PrivateTmpp=yes"))
    result = _verify(directory, "shadowd.service")
    assert "PrivateTmpp" in result.stdout + result.stderr


def _exposure(root: Path, unit: str) -> tuple[float, str]:
    result = subprocess.run([_tool("systemd-analyze"), "security", "--offline=yes", f"--root={root}", unit],
                            capture_output=True, text=True, timeout=60)
    match = EXPOSURE_RE.search(result.stdout + result.stderr)
    assert match, result.stdout[-2000:] + result.stderr[-2000:]
    return float(match.group(2)), match.group(3)


def _root_with(tmp_path: Path, unit: str, dropin: Path | None = None) -> Path:
    root = tmp_path / "root"
    system = root / "etc" / "systemd" / "system"
    system.mkdir(parents=True, exist_ok=True)
    shutil.copy(UNITS / unit, system / unit)
    if dropin is not None:
        (system / f"{unit}.d").mkdir()
        shutil.copy(dropin, system / f"{unit}.d" / "platform.conf")
    return root


@pytest.mark.parametrize("unit", ["shadowd.service", "shadowd-config.service"])
def test_service_exposure_is_ok_or_better(tmp_path, unit):
    value, level = _exposure(_root_with(tmp_path, unit), unit)
    assert level in ("SAFE", "OK") and value <= 4.9, (value, level)


@pytest.mark.parametrize("dropin", PLATFORM_DROPINS, ids=lambda p: p.stem)
def test_service_exposure_stays_ok_with_each_platform_dropin(tmp_path, dropin):
    value, level = _exposure(_root_with(tmp_path, "shadowd.service", dropin), "shadowd.service")
    assert level in ("SAFE", "OK") and value <= 4.9, (value, level)


def test_exposure_check_sees_hardening_removed(tmp_path):
    # the exposure check can fail: the same unit without its hardening scores worse than OK
    root = _root_with(tmp_path, "shadowd.service")
    unit = root / "etc/systemd/system/shadowd.service"
    kept = [line for line in unit.read_text().splitlines()
            if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability", "NoNew"))]
    unit.write_text("\n".join(kept) + "\n")
    value, level = _exposure(root, "shadowd.service")
    assert level not in ("SAFE", "OK") and value > 4.9


@pytest.mark.skipif(os.geteuid() != 0, reason="creating directories owned by another user needs root")
def test_sysusers_and_tmpfiles_create_user_and_directories_in_a_temp_root(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).touch()
    subprocess.run([_tool("systemd-sysusers"), f"--root={root}", str(UNITS / "sysusers.d/shadowd.conf")],
                   check=True, capture_output=True, timeout=60)
    entry = next(line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("shadowd:"))
    uid = int(entry.split(":")[2])
    assert entry.endswith(":/var/lib/shadowd:/usr/sbin/nologin") and 0 < uid < 1000  # a system user
    result = subprocess.run([_tool("systemd-tmpfiles"), f"--root={root}", "--create",
                             str(UNITS / "tmpfiles.d/shadowd.conf")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expect = {"var/lib/shadowd": (0o750, uid), "var/lib/shadowd/spool": (0o750, uid),
              "var/lib/shadowd/incoming": (0o2770, uid), "var/lib/shadowd/models": (0o750, uid),
              "var/lib/shadowd/config": (0o750, uid), "etc/shadowd/keys": (0o755, 0)}
    for rel, (mode, owner) in expect.items():
        st = (root / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, owner), rel


def test_units_and_config_manager_agree_on_paths(tmp_path):
    # keep in sync: shadowd.service StateDirectory, the path unit, tmpfiles.d and ConfigManager
    from shadowd.core.bundle_state import VehicleIdentity
    from shadowd.edges.config_apply import ConfigManager

    service = (UNITS / "shadowd.service").read_text()
    path_unit = (UNITS / "shadowd-config.path").read_text()
    tmpfiles = (UNITS / "tmpfiles.d/shadowd.conf").read_text()
    assert "StateDirectory=shadowd\n" in service
    watched = re.search(r"^PathChanged=(\S+)$", path_unit, re.M).group(1)
    (tmp_path / "keys").mkdir()
    with ConfigManager(tmp_path, tmp_path / "keys", VehicleIdentity("v", "desktop")) as manager:
        for d in (manager.incoming_dir, manager.models_dir, manager.store.root):
            assert f"/var/lib/shadowd/{d.relative_to(tmp_path)} " in tmpfiles
        assert watched == f"/var/lib/shadowd/{manager.incoming_dir.relative_to(tmp_path)}"
