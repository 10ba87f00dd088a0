"""Certificates for tests of TLS: a throwaway CA and a server certificate it signed, made with ``cryptography``.

Nothing is checked in and nothing comes from outside: each test run makes its own keys. The server's PEM keystore
is what the local broker's SASL_SSL listener reads (``ssl.keystore.type=PEM``): the private key in PKCS#8 without
encryption, then the certificate chain (server, CA). Clients trust ``ca.pem`` (``SOLICIT_KAFKA__SSL_CAFILE``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CLIENT_KEY_PASSWORD = "client-key-password"


@dataclass(frozen=True)
class Pki:
    """Files of one throwaway PKI."""

    ca_cert: Path
    """The CA certificate (PEM): what clients trust."""
    server_keystore: Path
    """The server's key (PKCS#8, unencrypted) followed by its certificate and the CA's (PEM)."""
    other_ca_cert: Path
    """A second CA that signed nothing the server has: trusting only it must fail the handshake."""
    client_cert: Path
    """A client certificate signed by the CA (mutual TLS), PEM."""
    client_key: Path
    """Its private key, PKCS#8 encrypted with :data:`CLIENT_KEY_PASSWORD`."""


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _ca(common_name: str, now: dt.datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
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
    return key, cert


def make_pki(directory: Path, *, host: str = "127.0.0.1") -> Pki:
    """A CA, a server certificate for ``host`` (and ``localhost``) signed by it, and an unrelated second CA."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key, ca_cert = _ca("solicit test CA", now)
    _, other_cert = _ca("some other CA", now)

    server_key = _key()
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kafka.test"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(pem))
    other_path = directory / "other-ca.pem"
    other_path.write_bytes(other_cert.public_bytes(pem))
    keystore = directory / "server-keystore.pem"
    keystore.write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + server_cert.public_bytes(pem)
        + ca_cert.public_bytes(pem)
    )
    keystore.chmod(0o600)

    client_key = _key()
    client_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("solicit-client"))
        .issuer_name(ca_cert.subject)
        .public_key(client_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    client_cert_path = directory / "client.pem"
    client_cert_path.write_bytes(client_cert.public_bytes(pem))
    client_key_path = directory / "client-key.pem"
    encryption = serialization.BestAvailableEncryption(CLIENT_KEY_PASSWORD.encode())
    client_key_path.write_bytes(client_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encryption))
    return Pki(
        ca_cert=ca_path,
        server_keystore=keystore,
        other_ca_cert=other_path,
        client_cert=client_cert_path,
        client_key=client_key_path,
    )
