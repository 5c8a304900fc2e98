"""``shadowd upload pin | drain``: operator tools for the uploader.

Glue only: the protocol and policy live in shadowd/edges/uploader.py and
shadowd/core/upload_policy.py (docs/upload-protocol.md).

- ``pin CERT.pem``: print the value ``upload.pin_sha256`` takes for a server certificate
  (hex SHA-256 of its SubjectPublicKeyInfo), so a pin can be configured without guessing.
- ``drain --spool DIR --config FILE``: upload what is spooled now (e.g. in the workshop before
  a service, when shadowd itself is stopped: the spool allows one process at a time) and print
  the uploader's metrics as JSON. Exit 1 if clips remain.
"""

from __future__ import annotations

import argparse
import json
import ssl
import time
import tomllib
from pathlib import Path

from shadowd.errors import ConfigError


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("upload", help="uploader tools: key pins, draining a spool")
    sub = parser.add_subparsers(dest="upload_command", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    p = sub.add_parser("pin", help="print the pin_sha256 value of a server certificate", formatter_class=fmt)
    p.add_argument("cert", type=Path, help="server certificate, PEM or DER")
    p.set_defaults(func=_do_pin)

    p = sub.add_parser("drain", help="upload everything spooled now, print metrics", formatter_class=fmt)
    p.add_argument("--spool", type=Path, required=True, help="spool directory")
    p.add_argument("--config", type=Path, required=True,
                   help="JSON or TOML file: the [upload] table, or a file holding only it")
    p.add_argument("--quota-bytes", type=int, default=1 << 40, help="spool quota while open")
    p.add_argument("--max-seconds", type=float, default=600.0, help="give up after this long")
    p.set_defaults(func=_do_drain)


def _do_pin(args: argparse.Namespace) -> int:
    from shadowd.edges.http_client import spki_sha256

    try:
        raw = args.cert.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read certificate {str(args.cert)!r}: {err.strerror}") from err
    try:
        der = ssl.PEM_cert_to_DER_cert(raw.decode()) if raw.lstrip().startswith(b"-----BEGIN") else raw
        print(spki_sha256(der))
    except ValueError as err:
        raise ConfigError(f"{str(args.cert)!r} is not a PEM or DER certificate: {err}") from err
    return 0


def _load_section(path: Path) -> dict:
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read upload config {str(path)!r}: {err.strerror}") from err
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"upload config {str(path)!r} does not parse: {err}") from err
    return data.get("upload", data) if isinstance(data, dict) else data


def _do_drain(args: argparse.Namespace) -> int:
    from shadowd.core.upload_policy import UploadConfig
    from shadowd.edges.spool import Spool
    from shadowd.edges.uploader import Uploader

    config = UploadConfig.from_dict(_load_section(args.config))
    with Spool(args.spool, quota_bytes=args.quota_bytes) as spool:
        uploader = Uploader(spool, config)
        deadline = time.monotonic() + args.max_seconds
        try:
            while time.monotonic() < deadline:
                result = uploader.run_once()
                if result.action == "idle":
                    break
                if result.action in ("waiting", "gated"):
                    time.sleep(min(max(result.wait_s, 0.05), max(0.0, deadline - time.monotonic()), 5.0))
        finally:
            uploader.close()
        metrics = uploader.metrics()
        left = len(spool.clips())
    metrics["clips_left"] = left
    print(json.dumps(metrics, indent=2))
    return 0 if left == 0 else 1
