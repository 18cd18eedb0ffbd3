"""Credentials from ``copur certs init`` output: gRPC servers that demand a client certificate
signed by the cluster's CA, channels that present one and verify the server's, and the key pairs
of the HTTPS front doors.

A :class:`TlsIdentity` is one service's material (the CA to trust, its certificate and key).
``None`` in its place means plaintext, which only the topology (``tls.mode: plaintext``, loopback
only) or an explicit ``--tls-mode plaintext`` on a loopback address asks for; in-process tests
pass None."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from copur.errors import ConfigError
from copur.transport.topology import Topology, is_loopback

__all__ = [
    "CA_CERT",
    "CA_KEY",
    "CLIENT",
    "HttpsFiles",
    "TlsIdentity",
    "add_port",
    "aio_channel",
    "cert_file",
    "channel",
    "http_ca",
    "https_files",
    "https_for",
    "identity_for",
    "key_file",
    "load_identity",
    "process_https",
    "process_identity",
    "require_identities",
]

ChannelOptions = Sequence[tuple[str, int | str]]

CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
CLIENT = "client"  # the identity of applications calling the fusion center's gRPC front door


def cert_file(directory: str | Path, name: str) -> Path:
    """``DIR/<name>.pem``: the certificate of service ``name``."""
    return Path(directory) / f"{name}.pem"


def key_file(directory: str | Path, name: str) -> Path:
    """``DIR/<name>-key.pem``: the private key of service ``name``."""
    return Path(directory) / f"{name}-key.pem"


@dataclass(frozen=True, repr=False)
class TlsIdentity:
    """One service's TLS material (PEM): the CA it trusts, its certificate and its private key."""

    name: str
    ca: bytes
    cert: bytes
    key: bytes

    def __repr__(self) -> str:  # never print a key
        return f"TlsIdentity(name={self.name!r})"

    def server_credentials(self) -> grpc.ServerCredentials:
        """Serve with this certificate; refuse every client that does not present one signed by
        the CA."""
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Dial presenting this certificate; trust only servers whose certificate the CA signed."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )


@dataclass(frozen=True)
class HttpsFiles:
    """What an HTTPS front door serves with: the CA, its certificate and private key (PEM files;
    uvicorn and :mod:`ssl` read key pairs from files only). Clients verify the certificate against
    the CA (``ca.pem``). A client certificate is optional, since API keys say who calls and probes
    and scrapers carry none, but one that is presented must be signed by the CA: the handshake
    refuses any other."""

    ca: Path
    cert: Path
    key: Path

    def uvicorn_options(self) -> dict[str, Any]:
        """The ``uvicorn.Config`` keyword arguments that serve HTTPS with this key pair."""
        return {
            "ssl_certfile": str(self.cert),
            "ssl_keyfile": str(self.key),
            "ssl_ca_certs": str(self.ca),
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        }


def https_files(directory: str | Path, name: str) -> HttpsFiles:
    """``DIR/<name>.pem`` and ``DIR/<name>-key.pem``, checked readable now: a missing file is a
    one-line ConfigError naming it and saying how to create it (loaded before anything binds)."""
    load_identity(directory, name)  # the CA and the key pair readable: the gRPC checks, messages
    folder = Path(directory)
    return HttpsFiles(ca=folder / CA_CERT, cert=cert_file(folder, name), key=key_file(folder, name))


def https_for(topology: Topology, name: str) -> HttpsFiles | None:
    """Service ``name``'s HTTPS key pair when the topology's HTTP front doors serve HTTPS (see
    ``tls.http``); None for plain HTTP (loopback only, which the topology enforces)."""
    return https_files(topology.tls.dir, name) if topology.https else None


def http_ca(topology: Topology) -> Path | None:
    """The CA file a client of the topology's HTTPS front doors verifies them with (``ca.pem`` of
    ``tls.dir``); None when they serve plain HTTP."""
    return Path(topology.tls.dir) / CA_CERT if topology.https else None


def process_https(
    mode: str, directory: str | Path, name: str | None, host: str
) -> HttpsFiles | None:
    """What a role's ``--tls-http`` flag asks for its HTTP front door: ``name``'s key pair under
    ``https``; None under ``plaintext``, refused unless ``host`` (the bind address) is loopback;
    any other mode is a ConfigError."""
    chosen = _flag_name("--tls-http", mode, ("https", "HTTPS", "plain HTTP"), name, host)
    return None if chosen is None else https_files(directory, chosen)


def _flag_name(
    flag: str, mode: str, names: tuple[str, str, str], name: str | None, host: str
) -> str | None:
    """What a role's TLS flag ``flag`` = ``mode`` asks for: ``name`` (the service whose key pair to
    load) under the secure mode, None under ``plaintext``, which is refused unless ``host`` is
    loopback. ``names``: the secure mode's value, how it is called, how plaintext is called."""
    secure, called, plain = names
    if mode == "plaintext":
        if not is_loopback(host):
            raise ConfigError(f"{flag} plaintext on {host}: {plain} is for loopback addresses only")
        return None
    if mode != secure:
        raise ConfigError(f"{flag} must be {secure} or plaintext, not {mode!r}")
    if name is None:
        raise ConfigError(f"{called} needs this service's name to pick its certificate")
    return name


def _missing(path: Path, directory: Path) -> ConfigError:
    return ConfigError(f"TLS file {path} is missing: run `copur certs init {directory}`")


def load_identity(directory: str | Path, name: str) -> TlsIdentity:
    """Read ``DIR/ca.pem``, ``DIR/<name>.pem`` and ``DIR/<name>-key.pem``; a missing or
    unreadable file is a one-line ConfigError naming it and saying how to create it."""
    folder = Path(directory)
    paths = (folder / CA_CERT, cert_file(folder, name), key_file(folder, name))
    contents = []
    for path in paths:
        if not path.is_file():
            raise _missing(path, folder)
        try:
            contents.append(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"TLS file {path} cannot be read: {exc.strerror}") from None
    return TlsIdentity(name=name, ca=contents[0], cert=contents[1], key=contents[2])


def identity_for(topology: Topology, name: str) -> TlsIdentity | None:
    """Service ``name``'s identity under the topology's ``tls`` section; None when it says
    plaintext."""
    if topology.tls.mode == "plaintext":
        return None
    return load_identity(topology.tls.dir, name)


def require_identities(topology: Topology, names: Sequence[str]) -> dict[str, TlsIdentity]:
    """Every named identity (nothing under plaintext): fails on the first missing file, before
    anything starts."""
    if topology.tls.mode == "plaintext":
        return {}
    return {name: load_identity(topology.tls.dir, name) for name in names}


def process_identity(
    mode: str, directory: str | Path, name: str | None, host: str
) -> TlsIdentity | None:
    """What a role's ``--tls-mode`` / ``--tls-dir`` flags ask for: ``name``'s identity under
    ``mtls``; None under ``plaintext``, which is refused unless ``host`` (the bind address) is
    loopback; any other mode is a ConfigError."""
    chosen = _flag_name("--tls-mode", mode, ("mtls", "mTLS", "plaintext gRPC"), name, host)
    return None if chosen is None else load_identity(directory, chosen)


def add_port(server: grpc.Server | grpc.aio.Server, address: str, tls: TlsIdentity | None) -> int:
    """Bind ``address`` with mTLS (``tls``) or plaintext (None); the bound port, 0 when it cannot
    bind."""
    try:
        if tls is None:
            return server.add_insecure_port(address)
        return server.add_secure_port(address, tls.server_credentials())
    except RuntimeError:
        return 0


def _options(
    options: ChannelOptions, server_name: str | None, tls: TlsIdentity | None
) -> list[tuple[str, int | str]]:
    extra = (
        [("grpc.ssl_target_name_override", server_name)] if tls is not None and server_name else []
    )
    return [*options, *extra]


def channel(
    target: str,
    tls: TlsIdentity | None,
    *,
    server_name: str | None = None,
    options: ChannelOptions = (),
) -> grpc.Channel:
    """A blocking channel to ``target``: mTLS with ``tls`` (the server's certificate must name
    ``server_name`` when given, else the target's host), plaintext with None."""
    opts = _options(options, server_name, tls)
    if tls is None:
        return grpc.insecure_channel(target, options=opts)
    return grpc.secure_channel(target, tls.channel_credentials(), options=opts)


def aio_channel(
    target: str,
    tls: TlsIdentity | None,
    *,
    server_name: str | None = None,
    options: ChannelOptions = (),
) -> grpc.aio.Channel:
    """As :func:`channel`, for asyncio."""
    opts = _options(options, server_name, tls)
    if tls is None:
        return grpc.aio.insecure_channel(target, options=opts)
    return grpc.aio.secure_channel(target, tls.channel_credentials(), options=opts)
