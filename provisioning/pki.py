"""The project CA and the certificates it signs (broker server certificate, device and sink
client certificates), made with the ``cryptography`` library.

Rules:
- Keys are ECDSA P-256 (small, fast on a Pi, accepted by mosquitto/OpenSSL and Python's ssl).
- The CA is ``ca.crt`` + ``ca.key`` in one directory; ``ca.key`` is 0600 and never leaves the
  provisioning machine. :func:`create_ca` refuses to overwrite an existing CA (every device
  certificate would silently stop verifying).
- A server certificate names its hosts in subjectAltName (DNS names and IP addresses; the CN is
  not used for verification by modern TLS stacks). A client certificate's CN is the account
  name (device id or sink user), so a broker with ``use_identity_as_username true`` applies the
  same ACL entries as with a password.
- Validity is explicit: ``now`` (injected; tests make expired certificates) and ``days``.
- Why ``cryptography`` and not the openssl CLI: one typed API instead of assembling command
  lines and extension config files, no dependence on the openssl version installed (the CLI's
  flags for backdating differ between 1.1 and 3.x), and errors as exceptions, not exit codes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge import UserError
from provisioning.files import write_public, write_secret

CA_CERT: Final = "ca.crt"
CA_KEY: Final = "ca.key"
CA_DAYS: Final = 3650
LEAF_DAYS: Final = 825


class PkiError(UserError):
    """The CA or a certificate cannot be made or read; the message names the file."""


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, cert_path: Path, key_path: Path) -> None:
        """The certificate 0644, the key 0600."""
        write_public(cert_path, self.cert_pem())
        write_secret(key_path, self.key_pem())


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "contactpoint"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca_cert(
    common_name: str = "contactpoint project CA",
    *,
    now: datetime | None = None,
    days: int = CA_DAYS,
) -> Issued:
    """A self-signed CA certificate (path length 0: it signs leaves only)."""
    start = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def create_ca(directory: Path, *, now: datetime | None = None, days: int = CA_DAYS) -> Issued:
    """Create ``ca.crt`` and ``ca.key`` (0600) in ``directory``; refuse to replace a CA."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    for path in (cert_path, key_path):
        if path.exists():
            raise PkiError(
                f"{path} exists already: a project CA is made once (replacing it would make "
                "every certificate it signed fail); use another --out directory"
            )
    ca = create_ca_cert(now=now, days=days)
    ca.save(cert_path, key_path)
    return ca


def load_ca(directory: Path) -> Issued:
    """The CA in ``directory`` (``ca.crt`` + ``ca.key``)."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise PkiError(
            f"{exc.filename}: no project CA here; create one with "
            f"'contactpoint provision ca --out {directory}'"
        ) from None
    except (OSError, ValueError, TypeError) as exc:
        raise PkiError(f"{directory}: cannot read the CA ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{key_path}: not an EC private key (made by contactpoint provision ca)")
    return Issued(cert, key)


def load_or_create_ca(directory: Path, *, now: datetime | None = None) -> tuple[Issued, bool]:
    """The CA in ``directory``, created first if there is none; (ca, created)."""
    if not (directory / CA_CERT).exists() and not (directory / CA_KEY).exists():
        return create_ca(directory, now=now), True
    return load_ca(directory), False


def issue(
    ca: Issued,
    common_name: str,
    *,
    server_hosts: tuple[str, ...] = (),
    now: datetime | None = None,
    days: int = LEAF_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A leaf certificate signed by ``ca``: a server certificate when ``server_hosts`` are
    given (names and IP addresses in subjectAltName), else a client certificate.
    ``not_before``/``not_after`` override the validity (tests make expired certificates)."""
    start = _now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server_hosts else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or start - timedelta(minutes=5))
        .not_valid_after(not_after or start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)
