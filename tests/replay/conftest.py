"""Replay test inputs made from the bundled real RAV4 minute (shadowd/data/rav4), in tmp dirs.

Each fixture writes a real file of one input kind: the candump log itself, its first seconds
re-written as .asc/.blf/.trc with python-can's own writers, a canonical-signal CSV converted
from the bundled 20 Hz decode, and an MCAP file with JSON-encoded topic messages.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shadowd" / "data"
RAV4_LOG = DATA / "rav4" / "c2k19_rav4_seg40.candump.log"
RAV4_CSV = DATA / "rav4" / "c2k19_rav4_seg40_decoded_20hz.csv"


def write_candump_head(dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of the real log as a candump -L file."""
    with RAV4_LOG.open() as src, dst.open("w") as out:
        t0 = None
        for line in src:
            t = float(line[1 : line.index(")")])
            t0 = t if t0 is None else t0
            if t - t0 > seconds:
                break
            out.write(line)
    return dst


def convert_log(src: Path, dst: Path) -> Path:
    """Re-write a CAN log in another python-can format (chosen by ``dst``'s suffix)."""
    import can

    with can.LogReader(str(src)) as reader, can.Logger(str(dst)) as writer:
        for msg in reader:
            writer.on_message_received(msg)
    return dst


def write_canonical_csv(dst: Path, drop: tuple[str, ...] = ()) -> Path:
    """The bundled 20 Hz decode as a canonical-signal CSV (t_s + canonical names)."""
    with RAV4_CSV.open() as fh:
        rows = list(csv.DictReader(fh))
    conv = {
        "speed_mps": lambda r: float(r["speed_mps"]),
        "steer_angle_deg": lambda r: float(r["steer_angle_deg"]),
        "steer_rate_dps": lambda r: float(r["steer_rate_dps"]),
        "yaw_rate_rps": lambda r: math.radians(float(r["yaw_rate_dps"])),
        "accel_long_mps2": lambda r: -float(r["accel_x_mps2"]),
        "accel_lat_mps2": lambda r: float(r["accel_y_mps2"]),
        "brake_pressed": lambda r: int(float(r["brake_pressed"])),
        "accel_pedal": lambda r: float(r["gas_pedal"]) / 100.0,
    }
    cols = ["t_s"] + [c for c in conv if c not in drop]
    with dst.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([r["t_boot_s"]] + [conv[c](r) for c in cols[1:]])
    return dst


def write_json_mcap(dst: Path, csv_path: Path) -> Path:
    """An MCAP file with a /vehicle channel of JSON messages whose fields are canonical names."""
    from mcap.writer import Writer

    with csv_path.open() as fh:
        rows = list(csv.DictReader(fh))
    with dst.open("wb") as f:
        w = Writer(f)
        w.start()
        schema = w.register_schema(name="shadowd.vehicle", encoding="jsonschema", data=b"{}")
        ch = w.register_channel(topic="/vehicle", message_encoding="json", schema_id=schema)
        other = w.register_channel(topic="/camera/info", message_encoding="json", schema_id=schema)
        for i, r in enumerate(rows):
            t_ns = int(round(float(r["t_s"]) * 1e9))
            msg = {k: float(v) for k, v in r.items() if k != "t_s"}
            msg["t_ns"] = t_ns
            w.add_message(channel_id=ch, log_time=t_ns, publish_time=t_ns, data=json.dumps(msg).encode(), sequence=i)
            if i % 20 == 0:
                w.add_message(channel_id=other, log_time=t_ns, publish_time=t_ns, data=b'{"fps": 20}', sequence=i)
        w.finish()
    return dst


@pytest.fixture(scope="session")
def inputs_dir(tmp_path_factory) -> Path:
    """One directory holding every input kind (CAN formats from the first 8 s)."""
    d = tmp_path_factory.mktemp("replay_inputs")
    head = write_candump_head(d / "head.log", 8.0)
    for suffix in (".asc", ".blf", ".trc"):
        convert_log(head, d / f"head{suffix}")
    csv_path = write_canonical_csv(d / "drive.csv")
    write_json_mcap(d / "drive.mcap", csv_path)
    return d


@pytest.fixture()
def rav4_dir(tmp_path) -> Path:
    """The full real minute with its IMU sidecar, as the README's demo sees it."""
    d = tmp_path / "rav4"
    d.mkdir()
    shutil.copy(RAV4_LOG, d / RAV4_LOG.name)
    shutil.copytree(DATA / "rav4" / "imu", d / "imu")
    return d
