"""Replay input readers on real data: every input kind, directories, labels, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from shadowd.edges.platforms import load_platform
from shadowd.errors import ReplayError
from shadowd.replay.inputs import discover_inputs, read_input
from tests.replay.conftest import RAV4_LOG, write_canonical_csv

NEEDS = ["speed_mps", "steer_angle_deg"]


@pytest.fixture(scope="module")
def desktop():
    return load_platform("desktop")


@pytest.mark.parametrize("name", ["head.log", "head.asc", "head.blf", "head.trc"])
def test_every_python_can_format_decodes_to_the_same_vehicle_signals(inputs_dir, desktop, name):
    ref = read_input(inputs_dir / "head.log", desktop, NEEDS).topics["vehicle"]
    got = read_input(inputs_dir / name, desktop, NEEDS)
    assert got.kind == "can"
    v = got.topics["vehicle"]
    assert abs(len(v) - len(ref)) <= 2
    # ASC and BLF store time relative to the log start: compare on time since the first frame
    t_ref = (ref["t_ns"] - ref["t_ns"][0]) / 1e9
    t_got = (v["t_ns"] - v["t_ns"][0]) / 1e9
    for sig, median_tol, max_tol in (("speed_mps", 0.005, 0.5), ("steer_angle_deg", 0.1, 5.0)):
        diff = np.abs(np.interp(t_ref, t_got, v[sig]) - ref[sig])  # one 10 ms tick of phase at most
        assert float(np.median(diff)) <= median_tol and float(diff.max()) <= max_tol, sig
    assert 9.0 < float(np.median(v["speed_mps"])) < 16.0  # the real car drives 10-15 m/s here


def test_candump_log_picks_up_its_imu_sidecar_in_the_vehicle_frame(rav4_dir, desktop):
    drive = read_input(rav4_dir / RAV4_LOG.name, desktop, NEEDS)
    imu = drive.topics["imu"]
    assert len(imu) == 6256 and "imu_sidecar" in drive.notes
    # sidecar z points down; canonical z points up: gravity reads about +9.8 m/s^2
    assert 9.0 < float(np.median(imu["accel_z_mps2"])) < 10.5
    # CAN yaw rate and IMU gyro-z agree in sign once the axis is flipped (README: r = -0.77 raw)
    v = drive.topics["vehicle"]
    gz = np.interp(v["t_ns"], imu["t_ns"], imu["gyro_z_rps"])
    assert np.corrcoef(gz, v["yaw_rate_rps"])[0, 1] > 0.5


def test_a_log_with_lines_out_of_order_decodes_to_time_ordered_topics(tmp_path, desktop):
    """Replay hands the decoder's topics on without sorting them again: the decoder drops
    frames older than the newest seen, so every topic comes out in t_ns order."""
    lines = RAV4_LOG.read_text().splitlines()[:20000]
    rng = np.random.default_rng(5)
    for i in rng.integers(1, len(lines) - 40, 300):  # move lines up to 40 places later
        lines.insert(int(i) + int(rng.integers(1, 40)), lines.pop(int(i)))
    log = tmp_path / "shuffled.log"
    log.write_text("\n".join(lines) + "\n")
    drive = read_input(log, desktop, NEEDS)
    assert drive.notes["decode"]["out_of_order"] > 0
    assert {"vehicle", "can_raw"} <= set(drive.topics)
    for name, frames in drive.topics.items():
        assert (np.diff(frames["t_ns"]) >= 0).all(), name


def test_canonical_csv_and_json_mcap_carry_the_same_signals(inputs_dir, desktop):
    a = read_input(inputs_dir / "drive.csv", desktop, NEEDS)
    b = read_input(inputs_dir / "drive.mcap", desktop, NEEDS)
    assert (a.kind, b.kind) == ("csv", "mcap")
    np.testing.assert_array_equal(a.topics["vehicle"]["t_ns"], b.topics["vehicle"]["t_ns"])
    np.testing.assert_allclose(a.topics["vehicle"]["speed_mps"], b.topics["vehicle"]["speed_mps"], rtol=1e-6)
    assert b.notes["skipped_channels"] == {"/camera/info": 60}
    # a column the CSV does not have is NaN, not a made-up zero
    assert np.isnan(a.topics["vehicle"]["steer_torque_driver_nm"]).all()


def test_csv_missing_a_signal_the_model_needs_is_refused_naming_it(tmp_path, desktop):
    p = write_canonical_csv(tmp_path / "nosteer.csv", drop=("steer_angle_deg",))
    with pytest.raises(ReplayError, match=r"needs steer_angle_deg.*add the column"):
        read_input(p, desktop, NEEDS)


def test_log_of_another_vehicle_is_refused_as_zero_decodable_frames(tmp_path, desktop):
    p = tmp_path / "civic.log"
    p.write_text("".join(f"({1000 + i * 0.01:.6f}) can7 1A{i % 10}#0011223344556677\n" for i in range(300)))
    with pytest.raises(ReplayError, match="zero frames decoded.*pick the matching --platform"):
        read_input(p, desktop, NEEDS)


@pytest.mark.parametrize("name,content", [
    ("empty.csv", ""),
    ("no_time.csv", "speed_mps,steer_angle_deg\n1,2\n"),
    ("garbage.mcap", "this is not an mcap file at all"),
    ("broken.blf", "LOGG but not really"),
])
def test_unreadable_inputs_raise_replay_error_with_the_file_name(tmp_path, desktop, name, content):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(ReplayError, match=name):
        read_input(p, desktop, NEEDS)


def test_directories_expand_to_sorted_inputs_without_labels_files(inputs_dir, tmp_path):
    (inputs_dir / "drive.csv.labels.json").write_text("[]")
    found = discover_inputs([inputs_dir, inputs_dir / "drive.csv"])
    names = [p.name for p in found]
    assert names == sorted(names) and len(names) == len(set(names))
    assert "drive.csv.labels.json" not in names
    assert {"head.log", "head.asc", "head.blf", "head.trc", "drive.csv", "drive.mcap"} <= set(names)
    with pytest.raises(ReplayError, match="does not exist"):
        discover_inputs([tmp_path / "nope.log"])


def test_labels_beside_an_input_are_read_and_validated(tmp_path, desktop):
    p = write_canonical_csv(tmp_path / "d.csv")
    lp = tmp_path / "d.csv.labels.json"
    lp.write_text(json.dumps([{"kind": "b", "start_s": 20, "end_s": 22}, {"kind": "a", "start_s": 3, "end_s": 4.5}]))
    labels = read_input(p, desktop, NEEDS).labels
    assert [(l.kind, l.start_s) for l in labels] == [("a", 3.0), ("b", 20.0)]
    lp.write_text(json.dumps([{"kind": "a", "start_s": 5, "end_s": 4}]))
    with pytest.raises(ReplayError, match="ends .* before it starts"):
        read_input(p, desktop, NEEDS)
