"""Signatures checked by the reference ``standardwebhooks`` verifier, not by our own code."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dispatch.gateway.signing import (
    SECRET_PREFIX,
    is_valid_secret,
    mask_secret,
    new_message_id,
    new_secret,
    secret_key,
    sign,
    signature_header,
    webhook_headers,
)

BODY = b'{"event":"offer.created","id":42}'


def _secret(key: bytes) -> str:
    return SECRET_PREFIX + base64.b64encode(key).decode()


def _verify(secret: str, body: bytes, headers: dict[str, str]) -> None:
    Webhook(secret).verify(body, headers, json_parse=False)


def test_new_secret_is_prefixed_standard_base64_of_32_bytes() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    assert len(secret_key(secret)) == 32
    assert new_secret() != secret


def test_single_secret_verifies_with_reference_library() -> None:
    secret = new_secret()
    msg_id = new_message_id()
    headers = webhook_headers([secret], msg_id, BODY, int(time.time()))
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == msg_id
    _verify(secret, BODY, headers)


def test_signature_matches_reference_sign() -> None:
    secret = new_secret()
    timestamp = 1_700_000_000
    expected = Webhook(secret).sign("msg_1", _utc(timestamp), BODY.decode())
    assert sign(secret, "msg_1", timestamp, BODY) == expected


def test_rotation_header_verifies_with_old_and_new_secret_alone() -> None:
    old, new = new_secret(), new_secret()
    headers = webhook_headers([new, old], new_message_id(), BODY, int(time.time()))
    entries = headers["webhook-signature"].split(" ")
    assert len(entries) == 2
    assert all(entry.startswith("v1,") for entry in entries)
    _verify(old, BODY, headers)
    _verify(new, BODY, headers)


def test_tampered_body_is_rejected() -> None:
    secret = new_secret()
    headers = webhook_headers([secret], new_message_id(), BODY, int(time.time()))
    with pytest.raises(WebhookVerificationError):
        _verify(secret, BODY.replace(b"42", b"43"), headers)


def test_stale_timestamp_is_rejected() -> None:
    secret = new_secret()
    stale = int(time.time()) - 6 * 60
    headers = webhook_headers([secret], new_message_id(), BODY, stale)
    with pytest.raises(WebhookVerificationError, match="too old"):
        _verify(secret, BODY, headers)


def test_wrong_secret_is_rejected() -> None:
    headers = webhook_headers([new_secret()], new_message_id(), BODY, int(time.time()))
    with pytest.raises((WebhookVerificationError, ValueError)):
        _verify(new_secret(), BODY, headers)


def test_secret_without_prefix_is_the_same_key() -> None:
    secret = new_secret()
    assert secret_key(secret.removeprefix(SECRET_PREFIX)) == secret_key(secret)


@pytest.mark.parametrize(
    "secret",
    [
        "whsec_not-base64!!",
        "whsec_",
        "",
        _secret(b"k" * 23),  # too short
        _secret(b"k" * 65),  # too long
        _secret(b"k" * 32).rstrip("="),  # unpadded: not strict base64
        _secret(b"k" * 32)[:-4] + "a_b-",  # URL-safe alphabet
        _secret(b"k" * 32) + " ",
    ],
)
def test_strict_secret_validation_rejects(secret: str) -> None:
    assert not is_valid_secret(secret)
    with pytest.raises(ValueError, match="webhook secret"):
        secret_key(secret)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_secret_sizes_in_range_are_accepted(size: int) -> None:
    assert is_valid_secret(_secret(b"\x01" * size))


def test_signing_with_an_invalid_secret_raises() -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        sign("whsec_not-base64!!", "msg_1", 1, BODY)


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], "msg_1", 1, BODY)


def test_message_ids_have_no_dots_and_are_unique() -> None:
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for msg_id in ids:
        assert "." not in msg_id
        assert msg_id.startswith("msg_")
        assert len(msg_id) == len("msg_") + 32
        int(msg_id.removeprefix("msg_"), 16)


def test_mask_secret_shows_only_prefix_and_four_characters() -> None:
    secret = _secret(bytes(range(32)))
    masked = mask_secret(secret)
    assert masked == secret[: len(SECRET_PREFIX) + 4] + "…"
    assert secret.removeprefix(SECRET_PREFIX)[4:] not in masked


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)
