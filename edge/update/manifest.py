"""The update manifest the sink sends on ``cmd/update``, signed with the fleet's key.

- The fleet's signing key is an Ed25519 key pair (PyNaCl, libsodium's ``crypto_sign``):
  ``contactpoint fleet init-signing`` writes the private seed (0600, stays with the operator)
  and the public key, which the card puts on every device (``/etc/contactpoint/update.pub``).
- A manifest names the version, every wheel to install by file name and SHA-256, where the
  wheels are (``source``: an absolute directory on the device, or an http(s) URL the names are
  appended to), and the time window it is valid in (``not_before``, ``expires``: a captured
  manifest cannot be replayed later to downgrade a device).
- On the wire: ``{"v": 1, "manifest": base64(JSON bytes), "signature": base64(64 bytes)}``; the
  signature covers the manifest's bytes exactly as they travel, so there is no canonical form
  to agree on. :func:`verify` checks the signature before it reads a single field.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from edge.update.releases import PACKAGE, check_version

KEY_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
#: a wheel's file name (no directory part)
WHEEL_PATTERN: Final = r"[A-Za-z0-9_][A-Za-z0-9_.+!-]{0,199}\.whl"
_WHEEL: Final = re.compile(WHEEL_PATTERN)
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
MAX_WHEELS: Final = 500
MAX_MANIFEST_BYTES: Final = 128 * 1024
#: a downloaded wheel larger than this is refused (numpy and av are ~15-40 MB)
MAX_WHEEL_BYTES: Final = 200 * 1024 * 1024


class ManifestError(ValueError):
    """The manifest is refused; the message says why."""


@dataclass(frozen=True, slots=True)
class Wheel:
    name: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    wheels: tuple[Wheel, ...]
    source: str
    not_before: float
    expires: float

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "version": self.version,
                "wheels": [{"name": w.name, "sha256": w.sha256} for w in self.wheels],
                "source": self.source,
                "not_before": self.not_before,
                "expires": self.expires,
            },
            sort_keys=True,
        ).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object, field: str) -> bytes:
    if not isinstance(text, str):
        raise ManifestError(f"{field}: missing (expected base64 text)")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ManifestError(f"{field}: not valid base64") from None


def new_signing_key() -> tuple[bytes, bytes]:
    """(private seed, public key): 32 bytes each."""
    key = SigningKey.generate()
    return bytes(key), bytes(key.verify_key)


def read_key(path: Path, what: str) -> bytes:
    """A key file: one line of base64 (32 bytes)."""
    try:
        key = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{what} {path}: cannot read a base64 key: {exc}") from None
    if len(key) != KEY_BYTES:
        raise ManifestError(f"{what} {path}: expected a {KEY_BYTES}-byte key, got {len(key)}")
    return key


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def build(
    version: str, wheelhouse: Path, *, source: str, not_before: float, expires: float
) -> Manifest:
    """A manifest for every wheel in ``wheelhouse`` (one of them contactpoint ``version``)."""
    wheels = tuple(Wheel(p.name, sha256_file(p)) for p in sorted(wheelhouse.glob("*.whl")))
    manifest = Manifest(check_version(version), wheels, source, not_before, expires)
    _check(manifest)
    return manifest


def sign(manifest: Manifest, seed: bytes) -> bytes:
    """The message for ``cmd/update``."""
    body = manifest.to_json()
    signature = SigningKey(seed).sign(body).signature
    return json.dumps({"v": 1, "manifest": _b64(body), "signature": _b64(signature)}).encode()


def verify(payload: bytes, public_key: bytes, now: float) -> Manifest:
    """The manifest in a ``cmd/update`` message, if the fleet's key signed it and it is valid
    at ``now``; ManifestError otherwise."""
    if len(payload) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"the message has {len(payload)} bytes (at most {MAX_MANIFEST_BYTES})")
    try:
        outer = json.loads(payload)
    except ValueError:
        raise ManifestError("the message is not JSON") from None
    if not isinstance(outer, dict):
        raise ManifestError("the message is not a JSON object")
    body = _unb64(outer.get("manifest"), "manifest")
    if "signature" not in outer:
        raise ManifestError("the manifest is not signed")
    signature = _unb64(outer.get("signature"), "signature")
    if len(signature) != SIGNATURE_BYTES:
        raise ManifestError(f"signature: expected {SIGNATURE_BYTES} bytes, got {len(signature)}")
    try:
        VerifyKey(public_key).verify(body, signature)
    except BadSignatureError:
        raise ManifestError(
            "the signature is not the fleet's (or the manifest was altered)"
        ) from None
    manifest = _parse(body)
    if now < manifest.not_before:
        raise ManifestError(f"the manifest is valid only from {manifest.not_before:.0f} on")
    if now >= manifest.expires:
        raise ManifestError(f"the manifest expired at {manifest.expires:.0f}")
    return manifest


def _parse(body: bytes) -> Manifest:
    try:
        raw: Any = json.loads(body)
        wheels = tuple(Wheel(str(w["name"]), str(w["sha256"])) for w in raw["wheels"])
        manifest = Manifest(
            version=str(raw["version"]),
            wheels=wheels,
            source=str(raw["source"]),
            not_before=float(raw["not_before"]),
            expires=float(raw["expires"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"the signed manifest is malformed: {exc!r}") from None
    _check(manifest)
    return manifest


def _check(manifest: Manifest) -> None:
    try:
        check_version(manifest.version)
    except ValueError as exc:
        raise ManifestError(str(exc)) from None
    if not manifest.wheels or len(manifest.wheels) > MAX_WHEELS:
        raise ManifestError(f"wheels: expected 1..{MAX_WHEELS}, got {len(manifest.wheels)}")
    for wheel in manifest.wheels:
        if _WHEEL.fullmatch(wheel.name) is None:
            raise ManifestError(f"wheel {wheel.name[:80]!r}: not a wheel file name")
        if _SHA256.fullmatch(wheel.sha256) is None:
            raise ManifestError(f"wheel {wheel.name}: sha256 is not 64 hex digits")
    ours = f"{PACKAGE}-{manifest.version}-"
    if not any(w.name.startswith(ours) for w in manifest.wheels):
        raise ManifestError(f"no {ours}*.whl among the wheels")
    scheme = urllib.parse.urlsplit(manifest.source).scheme
    if scheme not in ("http", "https") and not manifest.source.startswith("/"):
        raise ManifestError(
            f"source {manifest.source[:80]!r}: an absolute directory or an http(s) URL"
        )


def fetch(manifest: Manifest, dest: Path) -> Path:
    """Every wheel of the manifest in ``dest`` (created), each checked against its SHA-256;
    ManifestError names the first one missing or different."""
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in manifest.wheels:
        target = dest / wheel.name
        if manifest.source.startswith("/"):
            try:
                shutil.copyfile(Path(manifest.source) / wheel.name, target)
            except OSError as exc:
                raise ManifestError(f"wheel {wheel.name}: {exc.strerror}") from None
        else:
            _download(manifest.source.rstrip("/") + "/" + urllib.parse.quote(wheel.name), target)
        if sha256_file(target) != wheel.sha256:
            target.unlink()
            raise ManifestError(f"wheel {wheel.name}: its SHA-256 is not the manifest's")
    return dest


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:  # noqa: S310 - http(s) only (checked)
            size = 0
            while block := response.read(1 << 20):
                size += len(block)
                if size > MAX_WHEEL_BYTES:
                    raise ManifestError(f"{url}: larger than {MAX_WHEEL_BYTES} bytes")
                out.write(block)
    except OSError as exc:
        raise ManifestError(f"{url}: {exc}") from None
