"""The enrollment reply's sealing (contract/enroll.py says the protocol): libsodium's sealed
boxes through PyNaCl, not a construction of our own.

- The device makes an X25519 key pair (:func:`new_key_pair`) and sends the public key with its
  request; the enrollment service seals the reply to it (``crypto_box_seal``: a fresh ephemeral
  key per message, XSalsa20-Poly1305), so only that device's private key opens it.
- The context (the device's client id) is sealed inside with the plaintext and checked on
  opening: a reply made for another client id is refused even by the right key.
- A wrong key, a wrong context or an altered box is a ValueError; nothing is returned half-read.

PyNaCl is in the ``edge`` extra (the device) and in ``sink`` (the enrollment service): it
bundles libsodium, with wheels for aarch64.
"""

from __future__ import annotations

import base64
from typing import Final

# PyNaCl (and libsodium) is imported only when a key is made or a box sealed or opened:
# enrollment, once; the daemon's run never loads it (issue #14)

PRIVATE_BYTES: Final = 32
PUBLIC_BYTES: Final = 32


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
    """(private, public): 32 bytes each (X25519)."""
    from nacl.public import PrivateKey

    key = PrivateKey.generate()
    return bytes(key), bytes(key.public_key)


def public_key(private_key: bytes) -> bytes:
    if len(private_key) != PRIVATE_BYTES:
        raise ValueError(f"private key: expected {PRIVATE_BYTES} bytes, got {len(private_key)}")
    from nacl.public import PrivateKey

    return bytes(PrivateKey(private_key).public_key)


def check_public(public: bytes, field: str = "key") -> bytes:
    """The public key; ValueError unless it is 32 bytes and not the all-zero point."""
    if len(public) != PUBLIC_BYTES or not any(public):
        raise ValueError(f"{field}: not a public value (expected {PUBLIC_BYTES} bytes, X25519)")
    return public


def _framed(context: str, plaintext: bytes) -> bytes:
    ctx = context.encode("utf-8")
    return len(ctx).to_bytes(4, "big") + ctx + plaintext


def seal(public_key_: bytes, plaintext: bytes, context: str) -> dict[str, str]:
    """Encrypt ``plaintext`` for the holder of the private key of ``public_key_``."""
    from nacl.exceptions import CryptoError
    from nacl.public import PublicKey, SealedBox

    check_public(public_key_)
    try:
        box = SealedBox(PublicKey(public_key_)).encrypt(_framed(context, plaintext))
    except CryptoError as exc:  # libsodium refuses a key it cannot use (a low-order point)
        raise ValueError(f"key: not a public value ({exc})") from None
    return {"box": b64(bytes(box))}


def open_sealed(private_key: bytes, sealed: object, context: str) -> bytes:
    """Decrypt what :func:`seal` made for this private key; ValueError when it was sealed to
    another key or context, or altered."""
    if not isinstance(sealed, dict):
        raise ValueError("sealed: expected an object with box")
    box = unb64(sealed.get("box"), "sealed.box")
    from nacl.exceptions import CryptoError
    from nacl.public import PrivateKey, SealedBox

    try:
        framed = SealedBox(PrivateKey(private_key)).decrypt(box)
    except CryptoError:
        raise ValueError("sealed: not sealed to this key, or altered on the way") from None
    ctx = context.encode("utf-8")
    size = int.from_bytes(framed[:4], "big")
    if framed[4 : 4 + size] != ctx or size != len(ctx):
        raise ValueError("sealed: not sealed to this key (another client id)")
    return framed[4 + size :]
