"""Signed config bundles on disk: Ed25519 keys, the bundle envelope, trust, persisted apply state.

Rules of this file:
1. The bundle is a small JSON envelope (docs/config-bundle.md)::

       {"format": "shadowd-config-bundle/1", "key_id": "fleet-2026a",
        "payload": "<base64 of the canonical JSON config>", "signature": "<base64 Ed25519>"}

   The signature covers ``b"shadowd-config-bundle/1\\n" + payload_bytes`` (domain separation:
   a signature made for something else never verifies as a bundle). The payload is parsed
   only after its signature verified, and only as JSON, never as code.
2. Trust is a directory: ``<key_id>.pub`` (PEM SubjectPublicKeyInfo) per trusted key, and an
   optional ``revoked`` file (one key id per line) that wins over any .pub. Rotation: add the
   new .pub to the fleet, sign with the new key, then delete the old .pub (retire) or list it
   in ``revoked`` (compromised).
3. Every state file is written atomically (temp file, fsync, rename, fsync directory), so a
   power cut leaves either the old or the new file, never half of one.
4. Private keys are written with mode 0600 and never leave ``shadowd config keygen/sign``.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..core.bundle_state import ApplyState
from ..core.config import ServiceConfig, canonical_json, parse_config
from ..errors import BundleError, BundleSignatureError, ConfigError

BUNDLE_FORMAT = "shadowd-config-bundle/1"
SIGNING_CONTEXT = BUNDLE_FORMAT.encode() + b"\n"
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
"""Refuse bigger envelopes before parsing them (an inline zstd dictionary fits easily)."""

log = logging.getLogger(__name__)

_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_key_id(key_id: str) -> str:
    if not isinstance(key_id, str) or not _KEY_ID_RE.match(key_id):
        raise ConfigError(f"key id {key_id!r:.80} is not valid; use 1-64 letters, digits and . _ - "
                          "(it becomes a file name)")
    return key_id


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old or the new content, whole."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


class _suppress_oserror:
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return exc_type is not None and issubclass(exc_type, OSError)


# --- keys --------------------------------------------------------------------------------------


def generate_keypair(out_dir: Path, key_id: str) -> tuple[Path, Path]:
    """Create ``<key_id>.key`` (PEM PKCS#8, mode 0600) and ``<key_id>.pub`` in ``out_dir``.

    Refuses to overwrite an existing key (a lost signing key cannot be recovered).
    """
    check_key_id(key_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / f"{key_id}.key", out_dir / f"{key_id}.pub"
    for p in (priv_path, pub_path):
        if p.exists():
            raise ConfigError(f"{p} already exists; choose another --key-id or move the old key away")
    key = Ed25519PrivateKey.generate()
    atomic_write(priv_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()), mode=0o600)
    atomic_write(pub_path, key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"cannot read the signing key {path}: {err}; pass the .key file made by "
                          "'shadowd config keygen'") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} holds a {type(key).__name__}, not an Ed25519 key; make one with "
                          "'shadowd config keygen'")
    return key


def _load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ConfigError(f"trusted key {path} is unreadable: {err}; replace it with the .pub file "
                          "made by 'shadowd config keygen'") from err
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"trusted key {path} is a {type(key).__name__}, not Ed25519; remove it")
    return key


@dataclass(frozen=True)
class TrustStore:
    """The public keys this vehicle accepts bundles from, by key id, and the revoked ids."""

    keys: dict[str, Ed25519PublicKey]
    revoked: frozenset[str] = frozenset()
    broken: dict[str, str] = field(default_factory=dict)  # key id -> why its .pub is unusable

    @classmethod
    def load(cls, trust_dir: Path) -> "TrustStore":
        """Read ``<id>.pub`` files and the optional ``revoked`` list from ``trust_dir``.

        An unreadable or foreign key file is left out (listed in ``broken`` and logged): the
        other keys keep working, and a bundle signed with that key is refused as unknown_key
        with the reason. A missing directory raises ConfigError.
        """
        trust_dir = Path(trust_dir)
        if not trust_dir.is_dir():
            raise ConfigError(f"trust directory {trust_dir} does not exist; create it and put the "
                              "fleet's <key_id>.pub files in it")
        revoked: set[str] = set()
        revoked_file = trust_dir / "revoked"
        if revoked_file.exists():
            revoked = {line.strip() for line in revoked_file.read_text().splitlines()
                       if line.strip() and not line.startswith("#")}
        keys, broken = {}, {}
        for pub in sorted(trust_dir.glob("*.pub")):
            key_id = pub.stem
            if not _KEY_ID_RE.match(key_id) or key_id in revoked:
                continue
            try:
                keys[key_id] = _load_public_key(pub)
            except ConfigError as err:
                log.error("%s", err)
                broken[key_id] = str(err)
        return cls(keys=keys, revoked=frozenset(revoked), broken=broken)


# --- envelope ------------------------------------------------------------------------------------


def sign_bundle(config: dict | ServiceConfig, key: Ed25519PrivateKey, key_id: str) -> bytes:
    """Validate ``config`` (a dict as written by hand, or a ServiceConfig) and return the envelope.

    The payload is the canonical JSON of the *parsed* config, so what is signed is exactly what
    every vehicle will parse.
    """
    check_key_id(key_id)
    parsed = config if isinstance(config, ServiceConfig) else parse_config(config)
    payload = canonical_json(parsed.to_dict())
    signature = key.sign(SIGNING_CONTEXT + payload)
    envelope = {"format": BUNDLE_FORMAT, "key_id": key_id,
                "payload": base64.b64encode(payload).decode("ascii"),
                "signature": base64.b64encode(signature).decode("ascii")}
    return json.dumps(envelope, indent=1, sort_keys=True).encode("ascii") + b"\n"


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose signature verified: its config, the signer and the payload's sha256."""

    config: ServiceConfig
    key_id: str
    payload_sha256: str
    raw: bytes


def verify_bundle(data: bytes, trust: TrustStore) -> VerifiedBundle:
    """Check the envelope and the signature, then parse the payload.

    Raises BundleError with reason ``invalid_config`` (malformed envelope or payload),
    ``unknown_key`` (key id not trusted or revoked), or BundleSignatureError
    (``bad_signature``).
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit; "
                          "deliver a large dictionary beside the bundle instead of inline",
                          reason="invalid_config")
    try:
        envelope = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise BundleError(f"bundle is not a JSON envelope: {err}; sign it with 'shadowd config sign'",
                          reason="invalid_config") from err
    if not isinstance(envelope, dict) or envelope.get("format") != BUNDLE_FORMAT:
        fmt = envelope.get("format") if isinstance(envelope, dict) else envelope
        raise BundleError(f"bundle format {fmt!r:.60} is not {BUNDLE_FORMAT!r}; sign it with "
                          "'shadowd config sign' from this shadowd version", reason="invalid_config")
    key_id = envelope.get("key_id")
    if not isinstance(key_id, str):
        raise BundleError(f"bundle key_id {key_id!r:.60} is not a string", reason="invalid_config")
    if key_id in trust.revoked:
        raise BundleError(f"bundle is signed with key {key_id!r}, which is revoked on this vehicle; "
                          "sign it with a current fleet key", reason="unknown_key")
    public_key = trust.keys.get(key_id)
    if key_id in trust.broken:
        raise BundleError(f"bundle is signed with key {key_id!r}, whose trusted key file is unusable "
                          f"({trust.broken[key_id]})", reason="unknown_key")
    if public_key is None:
        raise BundleError(f"bundle is signed with key {key_id!r:.70}, which this vehicle does not trust "
                          f"(trusted: {sorted(trust.keys)}); install its .pub or sign with a trusted key",
                          reason="unknown_key")
    try:
        payload = base64.b64decode(envelope.get("payload", ""), validate=True)
        signature = base64.b64decode(envelope.get("signature", ""), validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise BundleSignatureError(f"bundle payload or signature is not valid base64: {err}") from err
    try:
        public_key.verify(signature, SIGNING_CONTEXT + payload)
    except InvalidSignature as err:
        raise BundleSignatureError(f"bundle signature does not verify with key {key_id!r}; the bundle "
                                   "was altered or signed with another key") from err
    try:
        config = parse_config(json.loads(payload))
    except (UnicodeDecodeError, ValueError) as err:
        raise BundleError(f"signed payload is not JSON: {err}", reason="invalid_config") from err
    except ConfigError as err:
        raise BundleError(f"signed config does not validate: {err}", reason="invalid_config") from err
    return VerifiedBundle(config=config, key_id=key_id, payload_sha256=hashlib.sha256(payload).hexdigest(),
                          raw=bytes(data))


# --- persisted apply state -------------------------------------------------------------------


class StateStore:
    """``<state>/config/``: ``apply-state.json`` plus the bundles it names, kept by payload sha256.

    ``bundles/<payload_sha256>.bundle`` holds every bundle that was ever active, so the last
    known good one can be re-verified and re-loaded after a restart or a rollback. Old ones
    beyond the active and last-good bundles are pruned.
    """

    def __init__(self, state_dir: Path):
        self.root = Path(state_dir) / "config"
        self.bundles = self.root / "bundles"
        self.bundles.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.state_path = self.root / "apply-state.json"

    def lock(self):
        """Take the exclusive lock on this state (held until the returned file is closed).

        Raises ConfigError when another process (the service, or a second
        ``shadowd config apply-incoming``) holds it.
        """
        f = open(self.root / "lock", "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            f.close()
            raise ConfigError(f"config state {self.root} is locked by another shadowd process; stop it "
                              "(or use 'shadowd reload' to have the running service apply)") from err
        return f

    def load(self) -> ApplyState:
        if not self.state_path.exists():
            return ApplyState()
        try:
            raw = json.loads(self.state_path.read_bytes())
        except (OSError, ValueError) as err:
            raise ConfigError(f"apply state {self.state_path} is unreadable: {err}; restore it or remove "
                              "it (anti-rollback then restarts from the next bundle)") from err
        return ApplyState.from_dict(raw)

    def save(self, state: ApplyState) -> None:
        atomic_write(self.state_path, json.dumps(state.to_dict(), indent=1, sort_keys=True).encode() + b"\n")

    def keep_bundle(self, payload_sha256: str, raw: bytes) -> None:
        path = self.bundles / f"{payload_sha256}.bundle"
        if not path.exists():
            atomic_write(path, raw)

    def read_bundle(self, payload_sha256: str) -> bytes:
        return (self.bundles / f"{payload_sha256}.bundle").read_bytes()

    def prune(self, state: ApplyState) -> None:
        keep = {s.payload_sha256 for s in (state.active, state.last_good, state.probation, *state.earlier_good)
                if s}
        for path in self.bundles.glob("*.bundle"):
            if path.stem not in keep:
                with _suppress_oserror():
                    path.unlink()
