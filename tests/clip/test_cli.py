"""``shadowd clip ...`` end to end through the real CLI entry point, and MCAP read back."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from shadowd.cli import main
from shadowd.clip import decode_clip, encode_clip
from tests.clip.helpers import real_clip


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "c.clip"
    path.write_bytes(encode_clip(real_clip(1.0)))
    return path


def test_info_shows_provenance_window_causes_and_stream_counts(clip_file, capsys):
    assert main(["clip", "info", str(clip_file)]) == 0
    out = capsys.readouterr().out
    assert "rav4-test" in out and "config v7" in out and "steer_gap at" in out
    clip = decode_clip(clip_file.read_bytes())
    for name, a in clip.streams.items():
        assert any(line.split()[:2] == [name, str(len(a))] for line in out.splitlines())
    assert main(["clip", "info", "--json", str(clip_file)]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["streams"]["can_raw"]["frames"] == len(clip.streams["can_raw"])
    assert s["causes"][0]["values"] == {"steer_err_deg": 7.25}


def test_verify_passes_a_good_clip_and_fails_a_corrupt_one_with_the_reason(clip_file, tmp_path, capsys):
    bad = tmp_path / "bad.clip"
    bad.write_bytes(clip_file.read_bytes()[:-100])
    assert main(["clip", "verify", str(clip_file)]) == 0
    assert main(["clip", "verify", str(clip_file), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"BAD   {bad}: clip truncated at byte" in out


def test_unknown_dictionary_file_is_a_one_line_error(clip_file, tmp_path, capsys):
    assert main(["clip", "info", str(clip_file), "--dict", str(tmp_path / "nope.zdict")]) == 1
    assert "cannot read zstd dictionary" in capsys.readouterr().err


def test_dump_writes_one_csv_per_stream_with_every_frame(clip_file, tmp_path):
    assert main(["clip", "dump", str(clip_file), "-o", str(tmp_path / "csv")]) == 0
    clip = decode_clip(clip_file.read_bytes())
    for name, a in clip.streams.items():
        rows = list(csv.reader(open(tmp_path / "csv" / f"{name}.csv")))
        assert len(rows) == len(a) + 1
        assert rows[1][0] == str(a["t_ns"][0])
    can = list(csv.DictReader(open(tmp_path / "csv" / "can_raw.csv")))
    first = clip.streams["can_raw"][0]
    assert can[0]["data_hex"] == bytes(first["data"][: first["dlc"]]).hex()
    pred = list(csv.DictReader(open(tmp_path / "csv" / "predictions.csv")))
    assert np.float32(pred[3]["steer_angle_deg[9]"]) == clip.streams["predictions"]["steer_angle_deg"][3, 9]


def test_export_mcap_reads_back_with_protobuf_decoder_frame_for_frame(clip_file, tmp_path):
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    out = tmp_path / "c.mcap"
    assert main(["clip", "export", str(clip_file), "--mcap", str(out)]) == 0
    clip = decode_clip(clip_file.read_bytes())
    got: dict[str, list] = {}
    with open(out, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert {s.encoding for s in summary.schemas.values()} == {"protobuf"}
        meta = list(reader.iter_metadata())
        assert json.loads(meta[0].metadata["provenance"])["vehicle_id"] == "rav4-test"
        for _schema, channel, message, decoded in reader.iter_decoded_messages():
            got.setdefault(channel.topic, []).append((message.log_time, decoded))
    assert {t: len(v) for t, v in got.items()} == {"/causes": 1, **{f"/{k}": len(a) for k, a in clip.streams.items()}}
    imu = clip.streams["imu"]
    log_t, m = got["/imu"][5]
    assert log_t == imu["t_ns"][5] and np.float32(m.gyro_z_rps) == imu["gyro_z_rps"][5]
    _, m = got["/predictions"][2]
    assert np.array_equal(np.asarray(m.steer_angle_deg, np.float32), clip.streams["predictions"]["steer_angle_deg"][2])
    _, m = got["/can_raw"][7]
    f = clip.streams["can_raw"][7]
    assert (m.can_id, m.bus, m.data) == (f["can_id"], f["bus"], bytes(f["data"][: f["dlc"]]))


def test_train_dict_writes_a_dictionary_that_decodes_clips_written_with_it(tmp_path, capsys):
    from shadowd.clip import load_dictionary

    paths = []
    for i in range(8):
        p = tmp_path / f"{i}.clip"
        p.write_bytes(encode_clip(real_clip(0.2, start_s=2 + 5 * i)))
        paths.append(str(p))
    out = tmp_path / "d.zdict"
    assert main(["clip", "train-dict", *paths, "-o", str(out), "--size", "8192"]) == 0
    d = load_dictionary(out)
    small = real_clip(0.2, start_s=50)
    with_dict = encode_clip(small, dictionary=d)
    p = tmp_path / "small.clip"
    p.write_bytes(with_dict)
    assert main(["clip", "verify", str(p), "--dict", str(out)]) == 0
    assert main(["clip", "verify", str(p)]) == 1
    assert f"dictionary id {d.dict_id()}" in capsys.readouterr().out
