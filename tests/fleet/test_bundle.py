"""edges/bundle.py: keys, the signed envelope, trust and rotation, persisted state files."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowd.core.bundle_state import ApplyState, Slot, activate
from shadowd.edges.bundle import (BUNDLE_FORMAT, MAX_BUNDLE_BYTES, StateStore, TrustStore, generate_keypair,
                                  load_private_key, sign_bundle, verify_bundle)
from shadowd.errors import BundleError, BundleSignatureError, ConfigError


def test_keygen_writes_private_key_owner_only_and_refuses_to_overwrite(tmp_path):
    priv, pub = generate_keypair(tmp_path, "fleet-2027a")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert b"PUBLIC KEY" in pub.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(tmp_path, "fleet-2027a")
    with pytest.raises(ConfigError, match="not valid"):
        generate_keypair(tmp_path, "../evil")


def test_signed_bundle_verifies_and_gives_back_the_config(fleet):
    data = fleet.bundle(3)
    verified = verify_bundle(data, TrustStore.load(fleet.trust))
    assert verified.config.version == 3 and verified.key_id == "fleet-a"
    envelope = json.loads(data)
    assert envelope["format"] == BUNDLE_FORMAT
    payload = base64.b64decode(envelope["payload"])
    assert json.loads(payload)["version"] == 3


def test_bundle_signed_by_untrusted_key_is_refused_as_unknown_key(fleet):
    fleet.add_key("rogue", trust=False)
    with pytest.raises(BundleError) as info:
        verify_bundle(fleet.bundle(3, key_id="rogue"), TrustStore.load(fleet.trust))
    assert info.value.reason == "unknown_key" and "'rogue'" in str(info.value)


def test_key_rotation_new_key_accepted_retired_and_revoked_keys_refused(fleet):
    fleet.add_key("fleet-b")  # 1. roll the new public key out to vehicles
    trust = TrustStore.load(fleet.trust)
    assert verify_bundle(fleet.bundle(4, key_id="fleet-b"), trust).key_id == "fleet-b"  # 2. sign with it
    assert verify_bundle(fleet.bundle(4, key_id="fleet-a"), trust).key_id == "fleet-a"  # old still fine
    (fleet.trust / "fleet-a.pub").unlink()  # 3. retire the old key
    with pytest.raises(BundleError) as info:
        verify_bundle(fleet.bundle(5, key_id="fleet-a"), TrustStore.load(fleet.trust))
    assert info.value.reason == "unknown_key"
    (fleet.trust / "revoked").write_text("# compromised\nfleet-b\n")  # a revoked id wins over its .pub
    with pytest.raises(BundleError, match="revoked") as info:
        verify_bundle(fleet.bundle(6, key_id="fleet-b"), TrustStore.load(fleet.trust))
    assert info.value.reason == "unknown_key"


def test_unreadable_trusted_key_is_left_out_and_the_others_keep_working(fleet):
    fleet.add_key("fleet-b")
    (fleet.trust / "fleet-b.pub").write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n")
    trust = TrustStore.load(fleet.trust)
    assert verify_bundle(fleet.bundle(3), trust).key_id == "fleet-a"
    with pytest.raises(BundleError, match="unusable") as info:
        verify_bundle(fleet.bundle(3, key_id="fleet-b"), trust)
    assert info.value.reason == "unknown_key"


def test_signature_from_other_key_under_trusted_id_is_bad_signature(fleet):
    rogue = fleet.add_key("rogue", trust=False)
    forged = sign_bundle(fleet.config(3), rogue, "fleet-a")  # claims to be fleet-a
    with pytest.raises(BundleSignatureError) as info:
        verify_bundle(forged, TrustStore.load(fleet.trust))
    assert info.value.reason == "bad_signature"


def test_signing_refuses_an_invalid_config(fleet):
    key = load_private_key(fleet.keys / "fleet-a.key")
    with pytest.raises(ConfigError, match="windows.pre_s"):
        sign_bundle(fleet.config(3, windows={"pre_s": -2}), key, "fleet-a")


@pytest.mark.parametrize("data, reason", [
    (b"\x00\xff not json", "invalid_config"),
    (b'{"format": "other/1"}', "invalid_config"),
    (b"[1, 2]", "invalid_config"),
    (b" " * (MAX_BUNDLE_BYTES + 1), "invalid_config"),
])
def test_malformed_envelope_is_refused_without_crashing(fleet, data, reason):
    with pytest.raises(BundleError) as info:
        verify_bundle(data, TrustStore.load(fleet.trust))
    assert info.value.reason == reason


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(position=st.integers(min_value=0), flip=st.integers(1, 255))
def test_tampering_any_byte_of_a_bundle_is_refused(fleet, position, flip):
    original = fleet.bundle(3)  # Ed25519 is deterministic: the same bytes every example
    trust = TrustStore.load(fleet.trust)
    data = bytearray(original)
    data[position % len(data)] ^= flip
    try:
        verified = verify_bundle(bytes(data), trust)
    except BundleError:
        return
    # only JSON whitespace outside the signed fields can change harmlessly; what verified must
    # still be exactly the signed payload
    assert verified.payload_sha256 == verify_bundle(original, trust).payload_sha256


def test_apply_state_persists_atomically_and_survives_reopen(tmp_path):
    store = StateStore(tmp_path)
    state = activate(ApplyState(), Slot(8, "c" * 64), 60)
    store.save(state)
    assert StateStore(tmp_path).load() == state
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


def test_corrupt_apply_state_is_a_clear_error(tmp_path):
    store = StateStore(tmp_path)
    store.state_path.write_text("{half a fi")
    with pytest.raises(ConfigError, match="unreadable"):
        store.load()


def test_state_lock_admits_one_writer(tmp_path):
    first = StateStore(tmp_path).lock()
    with pytest.raises(ConfigError, match="locked by another shadowd"):
        StateStore(tmp_path).lock()
    first.close()
    StateStore(tmp_path).lock().close()


def test_private_key_file_of_another_type_is_refused(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.key"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        load_private_key(path)
