"""Standard Webhooks v1 signatures: secrets, message ids and the three ``webhook-*`` headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from secrets import token_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret
MIN_KEY_BYTES = 24
MAX_KEY_BYTES = 64
_NEW_KEY_BYTES = 32
_MASK_VISIBLE = 4


def new_secret() -> str:
    """A fresh ``whsec_`` secret holding 32 random bytes in standard base64."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(_NEW_KEY_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key inside a secret; ValueError unless it is strict base64 of 24..64 bytes."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # validate=True: the lenient decoder skips junk, so two different strings could sign alike.
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret is not valid base64") from exc
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(
            f"webhook secret must decode to {MIN_KEY_BYTES}..{MAX_KEY_BYTES} bytes, not {len(key)}"
        )
    return key


def is_valid_secret(secret: str) -> bool:
    """Whether ``secret_key`` accepts the secret."""
    try:
        secret_key(secret)
    except ValueError:
        return False
    return True


def new_message_id() -> str:
    """A unique ``msg_`` id; hex only, because a dot would break the signed ``id.ts.body`` form."""
    return f"msg_{uuid.uuid4().hex}"


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64 HMAC-SHA256>`` signature over ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Space-separated signatures, one per secret, so receivers verify during a rotation."""
    if not secrets:
        raise ValueError("at least one webhook secret is required")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def webhook_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int
) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def mask_secret(secret: str) -> str:
    """The prefix and first four base64 characters, safe to show or log."""
    return SECRET_PREFIX + secret.removeprefix(SECRET_PREFIX)[:_MASK_VISIBLE] + "…"
