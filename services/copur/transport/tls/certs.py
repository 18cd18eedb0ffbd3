"""A development certificate authority and one key pair per service of a topology (``copur certs
init``).

Pure generation (:func:`make_ca`, :func:`issue`) and writing (:func:`write_certs`): EC P-256
keys, X.509 v3 certificates whose SANs hold the service name, ``localhost``, ``127.0.0.1``,
``::1`` and any extra host, usable for both TLS server and client authentication (every role that
dials also serves, and health probes present the probed service's own certificate). Private keys
are written 0600; the CA certificate is written last, so its presence means a complete set."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from copur.errors import ConfigError
from copur.transport.tls.credentials import CA_CERT, CA_KEY, CLIENT, cert_file, key_file
from copur.transport.topology import Topology, service_name

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CLIENT",
    "KeyPair",
    "cert_file",
    "issue",
    "key_file",
    "make_ca",
    "service_names",
    "write_certs",
]

BASE_HOSTS = ("localhost", "127.0.0.1", "::1")
_CLOCK_SKEW = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class KeyPair:
    """A private key and the certificate for its public key."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def key_pem(self) -> bytes:
        """The private key, PKCS#8 PEM, unencrypted (:func:`write_certs` writes it owner-only,
        0600)."""
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def cert_pem(self) -> bytes:
        """The certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)


def service_names(topologies: Iterable[Topology]) -> list[str]:
    """Every identity the topologies need, once, in a stable order: ``party-<i>``,
    ``adversary-<i>``, ``fusion`` and ``client``."""
    parties: set[int] = set()
    adversaries: set[int] = set()
    for t in topologies:
        parties |= {p.index for p in t.parties}
        adversaries |= {a.party for a in t.adversaries}
    names = [service_name("party", i) for i in sorted(parties)]
    names += [service_name("adversary", i) for i in sorted(adversaries)]
    return [*names, service_name("fusion"), CLIENT]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "copur"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(days: int) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    now = dt.datetime.now(dt.UTC)
    return now - _CLOCK_SKEW, now + dt.timedelta(days=days)


def make_ca(days: int = 365, common_name: str = "copur development CA") -> KeyPair:
    """A self-signed CA that may sign end-entity certificates only (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(key=key, cert=cert)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            entries.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(entries)


def issue(ca: KeyPair, name: str, *, hosts: Sequence[str] = (), days: int = 365) -> KeyPair:
    """A key pair for service ``name`` signed by ``ca``; SANs: ``name``, localhost, 127.0.0.1,
    ::1, ``hosts``."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san([name, *BASE_HOSTS, *hosts]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(key=key, cert=cert)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with permissions ``mode`` from the first byte (also when
    replacing a file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def write_certs(
    directory: str | Path,
    names: Sequence[str],
    *,
    hosts: Sequence[str] = (),
    days: int = 365,
    force: bool = False,
) -> list[Path]:
    """Create a CA and one key pair per name in ``directory``; return the files written, CA
    certificate last.

    Refuses (ConfigError) to replace an existing CA (``ca.pem``) unless ``force``: certificates
    already handed out would stop being trusted. A set without ``ca.pem`` (an interrupted run) is
    simply redone. Keys are 0600, certificates 0644."""
    out = Path(directory)
    if (out / CA_CERT).exists() and not force:
        raise ConfigError(
            f"{out / CA_CERT} already exists: pass --force to replace the CA and every certificate"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca = make_ca(days)
    written = [out / CA_KEY]
    _write(out / CA_KEY, ca.key_pem(), 0o600)
    for name in names:
        pair = issue(ca, name, hosts=hosts, days=days)
        _write(key_file(out, name), pair.key_pem(), 0o600)
        _write(cert_file(out, name), pair.cert_pem(), 0o644)
        written += [key_file(out, name), cert_file(out, name)]
    _write(out / CA_CERT, ca.cert_pem(), 0o644)
    return [*written, out / CA_CERT]
