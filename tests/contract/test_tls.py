"""The one explanation of TLS failures: OpenSSL's words -> the setting and file at fault, for
the device's ``mqtt.*`` keys and the sink's ``sink.*`` keys alike (the real handshakes against
mosquitto are in tests/security/test_tls.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from contract.tls import explain, validity, validity_problem
from tests.without import run_without

RENEW = "contactpoint provision device --cert"
CASES = [
    (
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:1006)",
        "the broker's certificate is not signed by the CA in {s}.ca_file ca.pem; point "
        "{s}.ca_file at the project CA",
    ),
    (
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired",
        "the broker's certificate has expired (verified with {s}.ca_file ca.pem)",
    ),
    (
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch",
        "does not name broker.local",
    ),
    (
        "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca (_ssl.c:2580)",
        "does not trust the client certificate {s}.cert_file client.pem",
    ),
    (
        "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required",
        "set {s}.cert_file and {s}.key_file",
    ),
    (
        "[SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] sslv3 alert certificate expired",
        f"refused the client certificate {{s}}.cert_file client.pem: it has expired; issue a "
        f"new one ({RENEW})",
    ),
    (
        "EOF occurred in violation of protocol (_ssl.c:2427)",
        "closed the connection right after the handshake: it most likely does not accept the "
        "client certificate {s}.cert_file client.pem",
    ),
]


@pytest.mark.parametrize("section", ["mqtt", "sink"])
@pytest.mark.parametrize(("openssl", "expected"), CASES)
def test_each_failure_names_the_setting_and_file(section: str, openssl: str, expected: str) -> None:
    said = explain(
        openssl, section=section, ca_file="ca.pem", cert_file="client.pem", renew=RENEW,
        host="broker.local",
    )  # fmt: skip
    assert expected.format(s=section) in said
    assert said.startswith("TLS")
    assert said.endswith(openssl)


def test_unset_files_are_named_as_unset() -> None:
    said = explain(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed", section="sink",
        ca_file=None, cert_file=None, renew=RENEW,
    )  # fmt: skip
    assert "the system CAs (sink.ca_file unset)" in said


def test_text_that_is_not_about_tls_comes_back_unchanged() -> None:
    text = "[Errno 111] Connection refused"
    assert explain(text, section="mqtt", ca_file="ca.pem", cert_file=None, renew=RENEW) == text


def _certificate(path: Path, not_before: datetime, not_after: datetime) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cp-test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


def test_a_refused_certificate_says_when_it_expired_or_starts(tmp_path: Path) -> None:
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    expired = _certificate(tmp_path / "old.pem", now - timedelta(days=400), now - timedelta(days=1))
    future = _certificate(tmp_path / "new.pem", now + timedelta(days=1), now + timedelta(days=400))
    assert validity_problem(expired, now) == "it expired on 2026-11-22 09:00 UTC"
    assert validity_problem(future, now) == (
        "it is not valid before 2026-11-24 09:00 UTC (check the clock)"
    )
    assert validity_problem(str(tmp_path / "absent.pem"), now) is None
    said = explain(
        "sslv3 alert certificate expired", section="sink", ca_file=None, cert_file=expired,
        renew="contactpoint provision sink --cert",
    )  # fmt: skip
    assert f"sink.cert_file {expired}: it expired on " in said
    assert "(contactpoint provision sink --cert)" in said


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [  # UTCTime (1950-2049: YY >= 50 is 19YY) and GeneralizedTime (2050 on)
        (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2027, 6, 7, 8, 9, 10, tzinfo=UTC)),
        (datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(2049, 12, 31, tzinfo=UTC)),
        (datetime(2049, 12, 31, 23, 0, tzinfo=UTC), datetime(2050, 1, 1, 0, 0, tzinfo=UTC)),
        (datetime(1950, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_the_dates_are_read_as_the_x509_library_reads_them(
    tmp_path: Path, not_before: datetime, not_after: datetime
) -> None:
    path = _certificate(tmp_path / "c.pem", not_before, not_after)
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    pem = b"a bundle may start with text\n" + Path(path).read_bytes() * 2
    assert validity(pem) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    assert validity(pem) == (not_before, not_after)


def test_what_is_not_a_certificate_has_no_dates(tmp_path: Path) -> None:
    good = Path(_certificate(tmp_path / "c.pem", datetime(2026, 1, 1, tzinfo=UTC),
                             datetime(2027, 1, 1, tzinfo=UTC))).read_bytes()  # fmt: skip
    body = good.split(b"\n")[1:-2]
    for broken in (
        b"",
        b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        b"-----BEGIN CERTIFICATE-----\n" + body[0] + b"\n-----END CERTIFICATE-----\n",  # cut
        good.replace(b"BEGIN CERTIFICATE", b"BEGIN PRIVATE KEY"),
        b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",  # SEQ{INT 1}
    ):
        with pytest.raises(ValueError):
            validity(broken)
        (tmp_path / "bad.pem").write_bytes(broken)
        assert validity_problem(str(tmp_path / "bad.pem")) is None


def test_certificate_dates_need_no_x509_library(tmp_path: Path) -> None:
    # the device installs no cryptography (pyproject.toml extras): contract.tls must work
    # without it, the dates included
    path = _certificate(tmp_path / "old.pem", datetime(2020, 1, 1, tzinfo=UTC),
                        datetime(2021, 2, 3, 4, 5, tzinfo=UTC))  # fmt: skip
    code = f"from contract.tls import validity_problem\nprint(validity_problem({path!r}))\n"
    done = run_without(["cryptography"], code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "it expired on 2021-02-03 04:05 UTC"
