"""Replay end to end on the real RAV4 minute: outputs, determinism, bad inputs, clips, A/B, sweep, Ray."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from shadowd.cli import main
from shadowd.clip import decode_clip
from shadowd.edges.platforms import load_platform
from shadowd.replay.inputs import read_input
from shadowd.replay.parallel import ray_available
from shadowd.replay.runner import default_model_path, file_sha256
from tests.replay.conftest import RAV4_LOG, write_canonical_csv

# Triggers that fire on this real minute (speed 9 -> 20 -> 14.7 m/s, steering within +-4.6 deg),
# so every run has clips to compare. Thresholds come from the bundled 20 Hz decode.
TEST_TRIGGERS = [
    {"name": "slowing", "expr": "speed_mps < 15", "priority": 3, "pre_s": 3.0, "post_s": 2.0, "cooldown_s": 10.0},
    {"name": "steering", "expr": "abs(steer_angle_deg) > 2", "priority": 5, "pre_s": 2.0, "post_s": 2.0,
     "cooldown_s": 5.0},
    {"name": "diverging", "expr": "divergence > 0.5", "priority": 6, "pre_s": 2.0, "post_s": 2.0, "cooldown_s": 8.0},
]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "triggers.json"
    p.write_text(json.dumps({"triggers": TEST_TRIGGERS, "windows": {"pre_s": 3, "post_s": 2, "max_clip_s": 30}}))
    return p


@pytest.fixture(scope="module")
def desktop():
    return load_platform("desktop")


def _replay(*argv) -> int:
    return main(["replay", *map(str, argv)])


def _load(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def test_replay_of_the_real_drive_writes_clips_report_and_html(rav4_dir, tmp_path, config):
    out = tmp_path / "out"
    assert _replay(rav4_dir, "--config", config, "--out", out) == 0
    rep = _load(out)
    assert rep["totals"]["inputs_ok"] == 1 and 59 < rep["totals"]["driven_s"] < 61
    assert rep["provenance"]["model_sha256"] == file_sha256(default_model_path())
    assert rep["model"]["predictions"] > 1000  # 20 Hz over a minute
    assert rep["divergence"]["count"] > 1000 and rep["divergence"]["mean"] > 0
    # signal triggers and a divergence-metric trigger both fire on this minute
    assert {"slowing", "steering", "diverging"} <= set(rep["triggers"])
    assert rep["triggers"] and all(t["rate_per_h"] == pytest.approx(t["count"] * 60, rel=0.05)
                                   for t in rep["triggers"].values())
    clips = sorted((out / "clips").glob("*.clip"))
    assert len(clips) == rep["totals"]["clips"] > 0
    assert rep["upload"]["bytes"] == sum(p.stat().st_size for p in clips)
    clip = decode_clip(clips[0].read_bytes())
    assert clip.provenance.model_sha256 == rep["provenance"]["model_sha256"]
    assert {"vehicle", "imu", "can_raw", "predictions", "divergence"} <= set(clip.streams)
    pred = next(decode_clip(p.read_bytes()).streams["predictions"] for p in clips
                if len(decode_clip(p.read_bytes()).streams["predictions"]) > 20)
    assert {"steer_angle_deg_h0", "accel_long_mps2_h14", "traj_x_m_h14", "traj_y_m_h0"} <= set(pred.dtype.names)
    assert np.isfinite(pred["steer_angle_deg_h0"]).all() and (np.diff(pred["t_ns"]) == 50_000_000).all()
    assert (pred["traj_x_m_h14"] > pred["traj_x_m_h0"]).all()  # the car moves forward over the horizon
    row = rep["inputs"][0]["clips"][0]
    assert set(row["triggers"]) == {c.trigger for c in clip.causes}
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3 and "Signal vs prediction" in html and "http" not in html.split("<svg")[0]
    timing = json.loads((out / "timing.json").read_text())
    assert timing["x_realtime"] > 1 and timing["inputs"][0]["run_s"] > 0


def test_outputs_are_byte_identical_with_one_and_two_workers(inputs_dir, rav4_dir, tmp_path, config):
    ins = [rav4_dir / RAV4_LOG.name, inputs_dir / "drive.csv", inputs_dir / "drive.mcap", inputs_dir / "head.blf"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert _replay(*ins, "--config", config, "--out", a, "--workers", 1, "--no-html") == 0
    assert _replay(*ins, "--config", config, "--out", b, "--workers", 2, "--no-html") == 0
    assert (a / "report.json").read_bytes() == (b / "report.json").read_bytes()
    ca = {p.name: p.read_bytes() for p in (a / "clips").iterdir()}
    cb = {p.name: p.read_bytes() for p in (b / "clips").iterdir()}
    assert ca == cb and len(ca) >= 2
    assert json.loads((b / "timing.json").read_text())["workers"] == 2


def test_bad_inputs_are_reported_with_reasons_and_the_rest_still_runs(tmp_path, config):
    d = tmp_path / "mixed"
    d.mkdir()
    write_canonical_csv(d / "good.csv")
    write_canonical_csv(d / "nosteer.csv", drop=("steer_angle_deg",))
    (d / "corrupt.clip").write_bytes(b"\x00garbage" * 50)
    (d / "other_car.log").write_text("".join(f"({i * 0.01:.6f}) can7 1A0#00112233\n" for i in range(200)))
    out = tmp_path / "out"
    assert _replay(d, "--config", config, "--out", out) == 3
    rows = {Path(r["input"]).name: r for r in _load(out)["inputs"]}
    assert rows["good.csv"]["status"] == "ok" and rows["good.csv"]["divergence"]["count"] > 100
    assert "steer_angle_deg" in rows["nosteer.csv"]["error"]
    assert rows["corrupt.clip"]["status"] == "error" and "corrupt.clip" in rows["corrupt.clip"]["error"]
    assert "zero frames decoded" in rows["other_car.log"]["error"]


def _scaled_model(dst: Path, factor: float) -> Path:
    """The reference model with its control outputs scaled: a real, different candidate."""
    import onnx
    from onnx import helper, numpy_helper
    import numpy as np

    m = onnx.load(default_model_path())
    out = next(o for o in m.graph.output if o.name == "controls")
    for node in m.graph.node:
        node.output[:] = ["controls_unscaled" if o == "controls" else o for o in node.output]
    m.graph.initializer.append(numpy_helper.from_array(np.array(factor, np.float32), "ab_factor"))
    m.graph.node.append(helper.make_node("Mul", ["controls_unscaled", "ab_factor"], [out.name]))
    onnx.save(m, dst)
    return dst


def test_clips_replay_against_a_new_model_and_ab_says_what_changed(rav4_dir, tmp_path, config):
    first = tmp_path / "first"
    assert _replay(rav4_dir, "--config", config, "--out", first, "--no-html") == 0
    clips = tmp_path / "corner_cases"
    shutil.copytree(first / "clips", clips)
    worse = _scaled_model(tmp_path / "worse.onnx", 0.0)  # predicts zero controls
    out = tmp_path / "ab"
    code = _replay(clips, "--config", config, "--model", default_model_path(), "--baseline", worse,
                   "--out", out)
    rep = _load(out)
    assert code == 0, rep["inputs"]
    ab = rep["ab"]
    assert ab["corner_cases"]["clips"] == len(list(clips.iterdir())) > 0
    assert rep["provenance"]["baseline_sha256"] == file_sha256(worse)
    rows = [r for r in ab["inputs"] if r.get("divergence", {}).get("mean_delta") is not None]
    assert rows and any(r["divergence"]["mean_delta"] < 0 for r in rows)  # reference beats zero controls
    assert all(r["corner_case"]["verdict"] in {"fixed", "improved", "not fixed", "regressed"} for r in rows)
    # every clip input says which triggers produced it and how divergence moved since then
    for r in rep["inputs"]:
        cc = r["corner_case"]
        assert cc["original_triggers"] and cc["recorded_model_sha256"] == file_sha256(default_model_path())
        if cc["recorded_divergence_mean"] is not None and cc["replayed_divergence_mean"] is not None:
            # same model, same frames: only the clip edges (no pre-window context) can differ
            assert abs(cc["divergence_delta"]) < 0.5


def test_a_clip_exported_to_mcap_replays_with_the_clip_frames(rav4_dir, tmp_path, config, desktop):
    out = tmp_path / "first"
    assert _replay(rav4_dir, "--config", config, "--out", out, "--no-html") == 0
    clip_path = sorted((out / "clips").glob("*.clip"))[-1]
    assert main(["clip", "export", str(clip_path), "--mcap", str(tmp_path / "c.mcap")]) == 0
    drive = read_input(tmp_path / "c.mcap", desktop, ["speed_mps", "steer_angle_deg"])
    clip = decode_clip(clip_path.read_bytes())
    for topic in ("vehicle", "imu"):
        assert drive.topics[topic].tobytes() == clip.streams[topic].tobytes()
    assert drive.notes["skipped_channels"]["/can_raw"] == len(clip.streams["can_raw"])


def test_sweep_with_labels_picks_the_best_point_within_the_upload_budget(tmp_path, config):
    csv = write_canonical_csv(tmp_path / "drive.csv")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "drive.csv.labels.json").write_text(json.dumps([
        {"kind": "slowdown", "start_s": 30.0, "end_s": 34.0}, {"kind": "turn", "start_s": 45.0, "end_s": 47.0}]))
    out = tmp_path / "out"
    assert _replay(csv, "--config", config, "--out", out, "--no-html", "--labels", tmp_path / "labels",
                   "--sweep", "steering:threshold=1,2,4", "--target-upload-share", "0.5") == 0
    rep = _load(out)
    assert rep["labels"]["labelled_events"] == 2
    pts = rep["sweep"]["points"]
    assert [p["params"]["steering:threshold:0"] for p in pts] == [1.0, 2.0, 4.0]
    shares = [p["upload_share"] for p in pts]
    # the lowest threshold uploads most (not monotonic in between: cooldowns move later edges)
    assert shares[0] > max(shares[1:])
    best = rep["sweep"]["best"]
    assert best["meets_target"] and best["capture_share"] == max(
        p["capture_share"] for p in pts if p["meets_target"])


def test_speed_paces_the_simulated_clock(inputs_dir, tmp_path, config):
    t0 = time.perf_counter()
    assert _replay(inputs_dir / "head.log", "--config", config, "--out", tmp_path / "o", "--speed", 40,
                   "--no-html") == 0
    assert time.perf_counter() - t0 >= 8.0 / 40  # 8 s of driving at 40x real time


@pytest.mark.skipif(ray_available() is not None, reason=f"Ray unavailable: {ray_available()}")
def test_ray_local_spreads_inputs_with_the_same_report(inputs_dir, tmp_path, config, monkeypatch):
    ins = [inputs_dir / "drive.csv", inputs_dir / "drive.mcap"]
    a, b = tmp_path / "local", tmp_path / "ray"
    assert _replay(*ins, "--config", config, "--out", a, "--no-html") == 0
    monkeypatch.setenv("RAY_DISABLE_USAGE_STATS", "1")
    assert _replay(*ins, "--config", config, "--out", b, "--no-html", "--ray", "local") == 0
    assert json.loads((b / "timing.json").read_text())["ray"] == "local"
    assert (a / "report.json").read_bytes() == (b / "report.json").read_bytes()


def test_replaying_clips_into_their_own_out_dir_is_refused(rav4_dir, tmp_path, config, capsys):
    out = tmp_path / "out"
    assert _replay(rav4_dir, "--config", config, "--out", out, "--no-html") == 0
    before = sorted(p.read_bytes() for p in (out / "clips").iterdir())
    assert _replay(out / "clips", "--out", out) == 1
    assert "would replace the clips being replayed" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in (out / "clips").iterdir()) == before


@pytest.mark.parametrize("argv,message", [
    (["--platform", "nope"], "unknown platform 'nope'"),
    (["--model", "missing.onnx"], "missing.onnx' does not exist"),
    (["--sweep", "nosuch:threshold=1,2"], "--sweep names trigger 'nosuch'"),
])
def test_run_wide_problems_stop_before_any_input_with_one_error(inputs_dir, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert _replay(inputs_dir / "drive.csv", "--out", out, *argv) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()
