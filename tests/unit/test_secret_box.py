"""Secrets at rest: what is sealed opens only with the same key, for the same row."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.token_format import TokenClaims
from control.secret_box import SecretBox, SecretBoxError
from control.token_signing import SigningKey, issue_token
from edge.link.token_auth import SignedTokens

SECRET = "correct horse battery staple, for Burrow"
AAD = b"signing-key:k1"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.from_secret(SECRET)


def test_a_sealed_secret_opens_with_the_same_key(box: SecretBox) -> None:
    sealed = box.encrypt(b"private key bytes", AAD)
    assert box.decrypt(sealed, AAD) == b"private key bytes"
    assert b"private key bytes" not in sealed
    assert sealed[0] == 1  # the format version leads


def test_the_same_operator_secret_opens_it_after_a_restart(box: SecretBox) -> None:
    sealed = box.encrypt(b"x" * 100, AAD)
    assert SecretBox.from_secret(SECRET).decrypt(sealed, AAD) == b"x" * 100


def test_sealing_twice_gives_different_blobs(box: SecretBox) -> None:
    # A fresh nonce each time: equal secrets do not show as equal rows.
    assert box.encrypt(b"same", AAD) != box.encrypt(b"same", AAD)


def test_an_empty_secret_round_trips(box: SecretBox) -> None:
    assert box.decrypt(box.encrypt(b"", AAD), AAD) == b""


def test_a_different_operator_secret_cannot_open_it(box: SecretBox) -> None:
    sealed = box.encrypt(b"private", AAD)
    other = SecretBox.from_secret(SECRET + "!")
    with pytest.raises(SecretBoxError) as info:
        other.decrypt(sealed, AAD)
    assert "secret key differs" in str(info.value)


def test_a_secret_moved_to_another_row_does_not_open(box: SecretBox) -> None:
    sealed = box.encrypt(b"private", b"signing-key:k1")
    with pytest.raises(SecretBoxError, match="altered or moved"):
        box.decrypt(sealed, b"signing-key:k2")
    with pytest.raises(SecretBoxError):
        box.decrypt(sealed, b"cert-key:k1")


@given(st.data())
def test_any_altered_byte_is_detected(data: st.DataObject) -> None:
    box = SecretBox(b"\x07" * 32)
    sealed = bytearray(box.encrypt(b"private key bytes", AAD))
    at = data.draw(st.integers(0, len(sealed) - 1))
    sealed[at] ^= data.draw(st.integers(1, 255))
    with pytest.raises(SecretBoxError):
        box.decrypt(bytes(sealed), AAD)


@given(st.binary(max_size=100))
def test_any_stored_bytes_open_or_raise_a_secret_box_error(blob: bytes) -> None:
    with contextlib.suppress(SecretBoxError):
        SecretBox(b"\x07" * 32).decrypt(blob, AAD)


def test_a_truncated_value_says_it_is_damaged(box: SecretBox) -> None:
    with pytest.raises(SecretBoxError, match="truncated"):
        box.decrypt(box.encrypt(b"private", AAD)[:20], AAD)


def test_a_future_format_version_says_to_upgrade(box: SecretBox) -> None:
    sealed = box.encrypt(b"private", AAD)
    with pytest.raises(SecretBoxError, match="format version 2"):
        box.decrypt(b"\x02" + sealed[1:], AAD)


def test_keys_and_operator_secrets_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        SecretBox(b"too short")
    with pytest.raises(ValueError, match="at least 16 characters"):
        SecretBox.from_secret("hunter2")


def test_a_signing_key_stored_sealed_still_signs_tokens_edges_accept(box: SecretBox) -> None:
    key = SigningKey.generate("k1")
    stored = box.encrypt(key.private_raw(), b"signing-key:" + key.kid.encode())
    loaded = SigningKey.from_raw("k1", box.decrypt(stored, b"signing-key:k1"))
    edge = SignedTokens([key.verify_key()], clock=lambda: 1_700_000_000.0)
    token = issue_token(TokenClaims(org="org_acme", tid="t", iat=1_700_000_000), loaded)
    assert edge.authenticate(token).account == "org_acme"
