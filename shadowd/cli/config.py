"""``shadowd config keygen | sign | verify | push | apply-incoming``: fleet config bundles by hand.

Rules of this file: argument parsing and printing only; the work is in edges/bundle.py,
edges/config_apply.py and edges/mqtt.py. Refusals print ``refused (<reason>): <detail>`` and
exit 1; errors go through cli/__init__ (``error: ...``). docs/config-bundle.md is the manual.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from ..errors import BundleError, ConfigError


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="make, sign, verify and push fleet config bundles")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)

    p = sub.add_parser("keygen", help="make an Ed25519 signing key pair (<id>.key mode 0600, <id>.pub)")
    p.add_argument("--out", required=True, type=Path, help="directory for the key files")
    p.add_argument("--key-id", required=True, help="key id, e.g. fleet-2026a (the file names)")
    p.set_defaults(func=_keygen)

    p = sub.add_parser("sign", help="validate a config JSON and sign it into a bundle")
    p.add_argument("config", type=Path, help="config JSON (docs/config-bundle.md)")
    p.add_argument("--key", required=True, type=Path, help="private key file from keygen")
    p.add_argument("--key-id", help="key id (default: the key file's name without .key)")
    p.add_argument("--out", required=True, type=Path, help="bundle file to write")
    p.set_defaults(func=_sign)

    p = sub.add_parser("verify", help="check a bundle as a vehicle would; non-zero on refusal")
    p.add_argument("bundle", type=Path)
    p.add_argument("--trust", required=True, type=Path, help="directory of trusted <key_id>.pub files")
    p.add_argument("--platform", help="check the target against this platform")
    p.add_argument("--vehicle", help="check the target against this vehicle id")
    p.add_argument("--fleet", help="check the target against this fleet")
    p.add_argument("--state-dir", type=Path, help="also check anti-rollback against this vehicle state")
    p.add_argument("--now", help="RFC 3339 UTC time to check validity at (default: now)")
    p.add_argument("--model", type=Path, help="also check that this model file is the one the bundle names")
    p.set_defaults(func=_verify)

    p = sub.add_parser("push", help="deliver a bundle into an incoming directory or over MQTT")
    p.add_argument("bundle", type=Path)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-dir", type=Path, help="a vehicle's incoming directory")
    where.add_argument("--mqtt", metavar="URL", help="broker, mqtts://host:port")
    p.add_argument("--model", type=Path, help="(--to-dir) model file to deliver beside the bundle")
    p.add_argument("--vehicle", help="(--mqtt) retained on shadowd/vehicle/<id>/config")
    p.add_argument("--fleet", help="(--mqtt) retained on shadowd/fleet/<name>/config")
    p.add_argument("--cafile", help="CA to verify the broker")
    p.add_argument("--cert", help="client certificate")
    p.add_argument("--key", help="client certificate key")
    p.add_argument("--timeout-s", type=float, default=10.0)
    p.set_defaults(func=_push)

    p = sub.add_parser("apply-incoming", help="apply bundles in <state>/incoming without the service")
    p.add_argument("--state-dir", required=True, type=Path)
    p.add_argument("--trust", type=Path, help="trusted keys (default: <state>/keys)")
    p.add_argument("--platform", required=True)
    p.add_argument("--vehicle", required=True)
    p.add_argument("--fleet")
    p.set_defaults(func=_apply_incoming)


def _keygen(args: argparse.Namespace) -> int:
    from ..edges.bundle import generate_keypair

    priv, pub = generate_keypair(args.out, args.key_id)
    print(f"private key {priv} (mode 0600, keep it off vehicles)\npublic key  {pub} (install in each "
          "vehicle's trust directory)")
    return 0


def _sign(args: argparse.Namespace) -> int:
    from ..core.config import format_rfc3339_utc
    from ..edges.bundle import TrustStore, atomic_write, load_private_key, sign_bundle, verify_bundle

    try:
        raw = json.loads(args.config.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read config {args.config}: {err}") from err
    key_id = args.key_id or args.key.name.removesuffix(".key")
    key = load_private_key(args.key)
    data = sign_bundle(raw, key, key_id)
    verified = verify_bundle(data, TrustStore({key_id: key.public_key()}))  # never ship what does not verify
    atomic_write(args.out, data)
    print(f"signed v{verified.config.version} with {key_id} → {args.out} "
          f"(payload sha256 {verified.payload_sha256})")
    now_s = time.time()
    if verified.config.expires_unix_s <= now_s:
        print(f"warning: this bundle has already expired ({format_rfc3339_utc(verified.config.expires_unix_s)}); "
              "every vehicle will refuse it", file=sys.stderr)
    elif verified.config.not_before_unix_s > now_s + 86400:
        print(f"warning: this bundle is not valid before {format_rfc3339_utc(verified.config.not_before_unix_s)}; "
              "vehicles refuse it until then", file=sys.stderr)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from ..core.bundle_state import ApplyState, VehicleIdentity, admit
    from ..core.config import Targets, format_rfc3339_utc, parse_rfc3339_utc
    from ..edges.bundle import StateStore, TrustStore, verify_bundle

    try:
        verified = verify_bundle(args.bundle.read_bytes(), TrustStore.load(args.trust))
    except BundleError as err:
        print(f"refused ({err.reason}): {err}")
        return 1
    except OSError as err:
        raise ConfigError(f"cannot read bundle {args.bundle}: {err}") from err
    cfg = verified.config
    now_s = parse_rfc3339_utc(args.now, "--now") if args.now else time.time()
    state = StateStore(args.state_dir).load() if args.state_dir else ApplyState()
    # Unstated identity parts are taken as matching: verify checks what it is told to.
    identity = VehicleIdentity(args.vehicle or (cfg.targets.vehicles or ("",))[0],
                               args.platform or (cfg.targets.platforms or ("",))[0],
                               args.fleet or (cfg.targets.fleets or (None,))[0])
    verdict = admit(state, cfg, verified.payload_sha256, identity, now_s)
    if verdict.refused:
        print(f"refused ({verdict.reason}): {verdict.detail}")
        return 1
    if args.model is not None:
        from ..edges.bundle import sha256_file

        try:
            actual = sha256_file(args.model)
        except OSError as err:
            print(f"refused (model_missing): cannot read {args.model}: {err.strerror or err}")
            return 1
        if actual != cfg.model.sha256:
            print(f"refused (model_hash_mismatch): {args.model} has sha256 {actual}, the bundle names "
                  f"{cfg.model.sha256}")
            return 1
    targets: Targets = cfg.targets
    print(f"ok: v{cfg.version} signed by {verified.key_id}, payload sha256 {verified.payload_sha256}\n"
          f"    valid {format_rfc3339_utc(cfg.not_before_unix_s)} .. {format_rfc3339_utc(cfg.expires_unix_s)}; targets "
          f"platforms={list(targets.platforms)} vehicles={list(targets.vehicles)} fleets={list(targets.fleets)}\n"
          f"    model {cfg.model.file_name} sha256 {cfg.model.sha256}; {len(cfg.triggers)} trigger(s); "
          f"probation {cfg.probation_s:g} s" + ("; already active" if verdict.outcome == "unchanged" else ""))
    return 0


def _push(args: argparse.Namespace) -> int:
    from ..edges.bundle import atomic_write

    try:
        data = args.bundle.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read bundle {args.bundle}: {err}") from err
    _check_envelope(data, args.bundle)
    if args.to_dir is not None:
        if args.vehicle or args.fleet:
            raise ConfigError("--vehicle/--fleet are for --mqtt; --to-dir delivers to that directory only")
        incoming = args.to_dir
        if not incoming.is_dir():
            raise ConfigError(f"incoming directory {incoming} does not exist; create it or fix the path")
        if args.model is not None:  # the model first: the path unit fires on the bundle
            tmp = incoming / f".{args.model.name}.tmp"
            shutil.copyfile(args.model, tmp)
            tmp.replace(incoming / args.model.name)
        target = incoming / args.bundle.with_suffix(".bundle").name
        atomic_write(target, data)
        print(f"delivered {target}")
        return 0
    from ..edges.mqtt import MqttEndpoint, fleet_topic, publish_bundle, vehicle_topic

    if bool(args.vehicle) == bool(args.fleet):
        raise ConfigError("with --mqtt give exactly one of --vehicle ID or --fleet NAME")
    if args.model is not None:
        raise ConfigError("--model is for --to-dir; over MQTT the model is delivered to the model store "
                          "separately (bundles stay small)")
    endpoint = MqttEndpoint.parse(args.mqtt, args.cafile, args.cert, args.key)
    topic = vehicle_topic(args.vehicle) if args.vehicle else fleet_topic(args.fleet)
    publish_bundle(endpoint, topic, data, timeout_s=args.timeout_s)
    print(f"published {len(data)} bytes to {topic} (retained, QoS 1, acknowledged)")
    return 0


def _check_envelope(data: bytes, path: Path) -> None:
    from ..edges.bundle import BUNDLE_FORMAT

    try:
        ok = json.loads(data).get("format") == BUNDLE_FORMAT
    except (ValueError, AttributeError):
        ok = False
    if not ok:
        raise ConfigError(f"{path} is not a signed bundle ({BUNDLE_FORMAT}); make one with 'shadowd config sign'")


def _apply_incoming(args: argparse.Namespace) -> int:
    from ..core.bundle_state import VehicleIdentity
    from ..edges.config_apply import ConfigManager

    platform = None
    try:
        from ..edges.platforms import load_platform
    except ImportError:
        load_platform = None
    if load_platform is not None:
        platform = load_platform(args.platform)
    trust = args.trust or args.state_dir / "keys"
    with ConfigManager(args.state_dir, trust, VehicleIdentity(args.vehicle, args.platform, args.fleet),
                       platform) as manager:
        manager.startup()
        results = manager.apply_incoming(activate_now=True)
    refused = 0
    for r in results:
        if r.outcome == "refused":
            refused += 1
            print(f"{r.source}: refused ({r.reason}): {r.detail}")
        else:
            print(f"{r.source}: v{r.version} {r.outcome}")
    if not results:
        print("no bundles in the incoming directory", file=sys.stderr)
    return 1 if refused else 0
