"""The enrollment reply's sealing (contract/enroll.py says the protocol), with the standard
library only: the device does not install ``cryptography`` (tests/test_extras.py).

- Key agreement: Diffie-Hellman in RFC 7919's ``ffdhe2048`` group (a safe prime, generator 2)
  with 256-bit exponents (RFC 7919 asks for at least 225 for this group). A peer's public value
  is checked to lie in the prime-order subgroup.
- Keys: HKDF-SHA256 (RFC 5869) over the shared secret, salted with the sender's ephemeral
  public value, gives an encryption and a MAC key.
- Encryption: HMAC-SHA256 as a PRF in counter mode (the key stream), then HMAC-SHA256 over the
  context, nonce and ciphertext (encrypt-then-MAC); the tag is checked in constant time.

The sealer uses a fresh ephemeral key per message, so a reply opens only with the private key
of the device that asked, and an altered box or a wrong context (client id) is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

#: RFC 7919 ffdhe2048 (p = 2q + 1 with q prime), generator 2
P: Final = int(
    "ffffffffffffffffadf85458a2bb4a9aafdc5620273d3cf1d8b9c583ce2d3695a9e13641146433fbcc939dce249b"
    "3ef97d2fe363630c75d8f681b202aec4617ad3df1ed5d5fd65612433f51f5f066ed0856365553ded1af3b557135e"
    "7f57c935984f0c70e0e68b77e2a689daf3efe8721df158a136ade73530acca4f483a797abc0ab182b324fb61d108"
    "a94bb2c8e3fbb96adab760d7f4681d4f42a3de394df4ae56ede76372bb190b07a7c8ee0a6d709e02fce1cdf7e2ec"
    "c03404cd28342f619172fe9ce98583ff8e4f1232eef28183c3fe3b1b4c6fad733bb5fcbc2ec22005c58ef1837d16"
    "83b2c6f34a26c1b2effa886b423861285c97ffffffffffffffff",
    16,
)
Q: Final = (P - 1) // 2
G: Final = 2
PRIVATE_BYTES: Final = 32
PUBLIC_BYTES: Final = 256
NONCE_BYTES: Final = 16
TAG_BYTES: Final = 32
_INFO: Final = b"contactpoint enroll v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{field}: expected base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError(f"{field}: not valid base64") from None


def new_key_pair() -> tuple[bytes, bytes]:
    """(private, public): 32 and 256 bytes."""
    private = (secrets.randbits(8 * PRIVATE_BYTES) | 1 << (8 * PRIVATE_BYTES - 1)).to_bytes(
        PRIVATE_BYTES, "big"
    )
    return private, public_key(private)


def public_key(private_key: bytes) -> bytes:
    if len(private_key) != PRIVATE_BYTES:
        raise ValueError(f"private key: expected {PRIVATE_BYTES} bytes, got {len(private_key)}")
    return pow(G, int.from_bytes(private_key, "big"), P).to_bytes(PUBLIC_BYTES, "big")


def check_public(public: bytes, field: str = "key") -> int:
    """The public value as a number; ValueError unless it is a valid one of this group."""
    if len(public) != PUBLIC_BYTES:
        raise ValueError(f"{field}: expected a {PUBLIC_BYTES}-byte public value")
    y = int.from_bytes(public, "big")
    if not 1 < y < P - 1 or pow(y, Q, P) != 1:
        raise ValueError(f"{field}: not a public value of the ffdhe2048 group")
    return y


def _keys(private_key: bytes, peer: bytes, epk: bytes) -> tuple[bytes, bytes]:
    shared = pow(check_public(peer), int.from_bytes(private_key, "big"), P)
    prk = hmac.digest(epk, shared.to_bytes(PUBLIC_BYTES, "big"), hashlib.sha256)  # extract
    okm, block = b"", b""
    for counter in (1, 2):  # expand to 64 bytes
        block = hmac.digest(prk, block + _INFO + bytes([counter]), hashlib.sha256)
        okm += block
    return okm[:32], okm[32:]


def _stream(key: bytes, nonce: bytes, data: bytes) -> bytes:
    out = bytearray()
    for i in range(0, len(data), 32):
        pad = hmac.digest(key, nonce + (i // 32).to_bytes(8, "big"), hashlib.sha256)
        out += bytes(a ^ b for a, b in zip(data[i : i + 32], pad, strict=False))
    return bytes(out)


def _tag(key: bytes, context: str, nonce: bytes, ciphertext: bytes) -> bytes:
    ctx = context.encode()
    message = len(ctx).to_bytes(4, "big") + ctx + nonce + ciphertext
    return hmac.digest(key, message, hashlib.sha256)


def seal(public_key_: bytes, plaintext: bytes, context: str) -> dict[str, str]:
    """Encrypt ``plaintext`` for the holder of the private key of ``public_key_``."""
    ephemeral, epk = new_key_pair()
    enc, mac = _keys(ephemeral, public_key_, epk)
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = _stream(enc, nonce, plaintext)
    box = ciphertext + _tag(mac, context, nonce, ciphertext)
    return {"epk": b64(epk), "nonce": b64(nonce), "box": b64(box)}


def open_sealed(private_key: bytes, sealed: object, context: str) -> bytes:
    """Decrypt what :func:`seal` made for this private key; ValueError when it was sealed to
    another key or context, or altered."""
    if not isinstance(sealed, dict):
        raise ValueError("sealed: expected an object with epk, nonce, box")
    epk = unb64(sealed.get("epk"), "sealed.epk")
    nonce = unb64(sealed.get("nonce"), "sealed.nonce")
    box = unb64(sealed.get("box"), "sealed.box")
    if len(nonce) != NONCE_BYTES or len(box) < TAG_BYTES:
        raise ValueError(f"sealed: nonce must be {NONCE_BYTES} bytes and box hold a tag")
    enc, mac = _keys(private_key, epk, epk)
    ciphertext, tag = box[:-TAG_BYTES], box[-TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(mac, context, nonce, ciphertext)):
        raise ValueError("sealed: not sealed to this key, or altered on the way")
    return _stream(enc, nonce, ciphertext)
