"""``shadowd upload pin | drain`` through the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.nginx import nginx_plain, pki, server_objects  # noqa: F401
from tests.upload._helpers import fill_spool

REPO = Path(__file__).resolve().parents[2]


def _shadowd(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shadowd", *argv], capture_output=True, text=True, cwd=REPO)


def test_pin_prints_the_spki_sha256_that_openssl_computes(pki):
    got = _shadowd("upload", "pin", str(pki.server_cert))
    assert got.returncode == 0, got.stderr
    pub = subprocess.run(["openssl", "x509", "-in", str(pki.server_cert), "-pubkey", "-noout"],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                         capture_output=True, check=True).stdout
    import hashlib

    assert got.stdout.strip() == hashlib.sha256(der).hexdigest()


def test_pin_of_a_file_that_is_no_certificate_is_a_one_line_error(tmp_path):
    bad = tmp_path / "x.pem"
    bad.write_text("hello")
    got = _shadowd("upload", "pin", str(bad))
    assert got.returncode == 1
    assert got.stderr.startswith("error: ") and "x.pem" in got.stderr


def test_drain_uploads_every_spooled_clip_and_prints_metrics(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [1000, 200_000])
    spool.close()
    cfg = tmp_path / "upload.toml"
    cfg.write_text(f'[upload]\nendpoint_url_template = "{nginx_plain.url}/{{vehicle_id}}/{{clip_id}}.shdc"\n'
                   'vehicle_id = "VCLI"\n')
    got = _shadowd("upload", "drain", "--spool", str(spool.root), "--config", str(cfg))
    assert got.returncode == 0, got.stderr
    metrics = json.loads(got.stdout)
    assert metrics["uploaded"] == 2 and metrics["clips_left"] == 0
    assert server_objects(nginx_plain.root).clip_ids == set(ids)


def test_drain_with_a_bad_config_names_the_key_and_exits_1(tmp_path):
    cfg = tmp_path / "upload.json"
    cfg.write_text(json.dumps({"endpoint_url_template": "https://x/{clip_id}", "network_policy": "often"}))
    got = _shadowd("upload", "drain", "--spool", str(tmp_path / "spool"), "--config", str(cfg))
    assert got.returncode == 1
    assert "network_policy" in got.stderr and "'often'" in got.stderr
