"""`copur certs init`: a CA and one key pair per service, private keys 0600, the SANs every link
dials by, and no silent replacement of an existing CA."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from copur.cli import app
from copur.errors import ConfigError
from copur.transport.tls.certs import service_names, write_certs
from copur.transport.topology import load_topology

REPO = Path(__file__).resolve().parents[2]
EXPECTED = [f"party-{i}" for i in range(6)] + ["adversary-1", "fusion", "client"]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> set[str]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def _init(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["certs", "init", *args])
    return result.exit_code, result.output


def test_init_writes_a_ca_and_a_key_pair_per_service_of_the_topology(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "certs"

    # Execute
    code, output = _init(str(out), "--topology", str(REPO / "deploy" / "cluster.yaml"))

    # Assert
    assert code == 0, output
    expected = (
        {"ca.pem", "ca-key.pem"}
        | {f"{n}.pem" for n in EXPECTED}
        | {f"{n}-key.pem" for n in EXPECTED}
    )
    assert {p.name for p in out.iterdir()} == expected
    for key in out.glob("*-key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key.name
    ca = _cert(out / "ca.pem")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for name in EXPECTED:
        cert = _cert(out / f"{name}.pem")
        cert.verify_directly_issued_by(ca)
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)


def test_each_certificate_names_its_service_loopback_and_extra_hosts(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "certs"
    topology = str(REPO / "deploy" / "cluster.yaml")

    # Execute
    code, output = _init(
        str(out), "--topology", topology, "--host", "copur.example.org", "--host", "10.1.2.3"
    )

    # Assert
    assert code == 0, output
    for name in EXPECTED:
        assert _sans(_cert(out / f"{name}.pem")) == {
            name,
            "localhost",
            "127.0.0.1",
            "::1",
            "copur.example.org",
            "10.1.2.3",
        }
    ips = (
        _cert(out / "fusion.pem")
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value
    )
    assert ipaddress.ip_address("10.1.2.3") in ips.get_values_for_type(
        x509.IPAddress
    )  # an IP SAN, not a DNS name


def test_several_topologies_get_the_union_of_their_services(tmp_path: Path) -> None:
    # Prepare
    topologies = [
        load_topology(REPO / "deploy" / f, env={})
        for f in ("cluster.yaml", "cluster-scenarios.yaml")
    ]

    # Execute
    names = service_names(topologies)

    # Assert: the scenario topology puts an adversary in front of every party
    assert names == [f"party-{i}" for i in range(6)] + [f"adversary-{i}" for i in range(6)] + [
        "fusion",
        "client",
    ]


def test_an_existing_ca_is_not_replaced_without_force(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "certs"
    write_certs(out, ["party-0"])
    before = (out / "ca.pem").read_bytes(), (out / "party-0-key.pem").read_bytes()

    # Execute
    code, output = _init(str(out), "--topology", str(REPO / "deploy" / "cluster.yaml"))

    # Assert: one line, exit 2, nothing touched
    assert code == 2
    assert (
        output.strip()
        == f"error: {out / 'ca.pem'} already exists: pass --force to replace the CA and every "
        "certificate"
    )
    assert ((out / "ca.pem").read_bytes(), (out / "party-0-key.pem").read_bytes()) == before


def test_force_replaces_the_ca_and_rewrites_keys_0600(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "certs"
    write_certs(out, ["party-0"])
    old_ca = (out / "ca.pem").read_bytes()
    (out / "party-0-key.pem").chmod(0o644)

    # Execute
    write_certs(out, ["party-0"], force=True)

    # Assert
    assert (out / "ca.pem").read_bytes() != old_ca
    assert stat.S_IMODE((out / "party-0-key.pem").stat().st_mode) == 0o600
    _cert(out / "party-0.pem").verify_directly_issued_by(_cert(out / "ca.pem"))


def test_an_interrupted_run_without_ca_pem_is_redone(tmp_path: Path) -> None:
    # Prepare: ca.pem is written last; its absence means an incomplete set
    out = tmp_path / "certs"
    write_certs(out, ["party-0"])
    (out / "ca.pem").unlink()

    # Execute
    written = write_certs(out, ["party-0"])

    # Assert
    assert written[-1] == out / "ca.pem"
    _cert(out / "party-0.pem").verify_directly_issued_by(_cert(out / "ca.pem"))


@pytest.mark.parametrize("days", [0, -3])
def test_a_validity_under_one_day_is_refused(tmp_path: Path, days: int) -> None:
    with pytest.raises(ConfigError, match="--days must be at least 1"):
        write_certs(tmp_path / "certs", ["party-0"], days=days)


def test_an_invalid_topology_is_a_one_line_error(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "cluster.yaml"
    bad.write_text(yaml.safe_dump({"bundle": "b", "parties": [{"index": 1, "port": 5}]}))

    # Execute
    code, output = _init(str(tmp_path / "certs"), "--topology", str(bad))

    # Assert
    assert code == 2 and output.startswith("error: ") and output.count("\n") == 1
    assert not (tmp_path / "certs").exists()
