"""The one cluster topology file (``deploy/cluster.yaml``) that drives the local launcher, docker
compose and the Kubernetes manifests: the bundle, each party's port, which parties sit behind an
adversary, and the fusion center's settings, and how every gRPC link is secured (``tls``: mutual
TLS unless the file says otherwise). Environment variables override a few fields (``COPUR_*``)."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from copur.errors import ConfigError

__all__ = [
    "AdversaryNode",
    "AuthConfig",
    "FusionNode",
    "PartyNode",
    "TlsConfig",
    "Topology",
    "is_loopback",
    "load_topology",
    "service_name",
]

ENV_OVERRIDES = {
    "COPUR_BUNDLE": "bundle",
    "COPUR_DATA_DIR": "data_dir",
    "COPUR_BIND_HOST": "bind_host",
    "COPUR_HOSTNAMES": "hostnames",
    "COPUR_TLS_MODE": "tls.mode",
    "COPUR_TLS_DIR": "tls.dir",
    "COPUR_TLS_HTTP": "tls.http",
    "COPUR_AUTH_MODE": "auth.mode",
    "COPUR_API_KEYS_FILE": "auth.keys_file",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PartyNode(_Strict):
    """Party ``index``, serving gRPC on ``port``."""

    index: int = Field(ge=0)
    port: int = Field(ge=1, le=65535)


class AdversaryNode(_Strict):
    """A compromised party: a gRPC proxy in front of party ``party`` with an HTTP control
    endpoint."""

    party: int = Field(ge=0)
    port: int = Field(ge=1, le=65535)
    control_port: int = Field(ge=1, le=65535)
    policy: str = "none"


class FusionNode(_Strict):
    """The fusion center: its two front doors' ports, batching, the party deadline and the
    ejection of stalled parties, the request limits, the default defense and the device of its
    worker."""

    http_port: int = Field(default=8080, ge=1, le=65535)
    grpc_port: int = Field(default=50050, ge=1, le=65535)
    max_batch: int = Field(default=256, ge=1)
    max_delay_ms: float = Field(default=5.0, ge=0)
    deadline_ms: float = Field(default=1000.0, gt=0)
    min_parties: int = Field(default=1, ge=1)
    max_request_ids: int = Field(default=1024, ge=1)
    batching: bool = True
    default_defense: str = "copur"
    device: str = "auto"
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024
    )  # larger HTTP bodies: 413 before parsing
    # A party that misses its deadline (or errs) eject_after times in a row is ejected: batches stop
    # waiting for it, and a probe re-admits it once it answers; the ejection lasts eject_base_ms,
    # doubled at each ejection in a row up to eject_max_ms. eject_after 0: never eject.
    eject_after: int = Field(default=3, ge=0)
    eject_base_ms: float = Field(default=1000.0, gt=0)
    eject_max_ms: float = Field(default=8000.0, gt=0)


class AuthConfig(_Strict):
    """API keys on the HTTP and gRPC front doors of the fusion center and the adversaries'
    control endpoints: ``keys`` (the hashes in ``keys_file``, see ``copur keys init``;
    ``$COPUR_API_KEYS`` may hold the file's JSON instead) or ``none`` (loopback only). A
    relative ``keys_file`` is taken from the working directory."""

    mode: Literal["keys", "none"] = "keys"
    keys_file: str = "runs/certs/api-keys.json"


class TlsConfig(_Strict):
    """How every link is secured. ``mode``, the gRPC links: ``mtls`` (each side presents a
    certificate signed by the CA in ``dir``, see ``copur certs init``) or ``plaintext`` (loopback
    only). ``http``, the HTTP front doors (the fusion center's API, the adversaries' control):
    ``https`` (the service's certificate from ``dir``; clients verify it against ``ca.pem``) or
    ``plaintext`` (loopback only); unwritten, it follows ``mode``: HTTPS under mtls. A relative
    ``dir`` is taken from the working directory, as ``bundle`` is."""

    mode: Literal["mtls", "plaintext"] = "mtls"
    dir: str = "runs/certs"
    http: Literal["https", "plaintext"] | None = None

    @property
    def https(self) -> bool:
        """True when the HTTP front doors serve HTTPS (written, or implied by ``mode: mtls``)."""
        return self.http == "https" or (self.http is None and self.mode == "mtls")


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1: addresses no other machine can reach."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Topology(_Strict):
    """A whole cluster: the bundle, where every role listens and how the others reach it, TLS and
    API keys. Validated as a whole: party indices 0..M-1 once each, no port used twice, at most one
    adversary per existing party, plaintext and open APIs on loopback only."""

    bundle: str
    data_dir: str | None = None
    bind_host: str = "127.0.0.1"
    hostnames: Literal["local", "service"] = "local"
    parties: list[PartyNode]
    adversaries: list[AdversaryNode] = []
    fusion: FusionNode = FusionNode()
    tls: TlsConfig = TlsConfig()
    auth: AuthConfig = AuthConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Topology:
        if self.auth.mode == "none" and not is_loopback(self.bind_host):
            raise ValueError(
                f"auth.mode none with bind_host {self.bind_host}: an API without keys is for "
                "loopback only "
                "(use auth.mode keys, or bind 127.0.0.1)"
            )
        if self.tls.mode == "plaintext" and not is_loopback(self.bind_host):
            raise ValueError(
                f"tls.mode plaintext with bind_host {self.bind_host}: plaintext gRPC is for "
                "loopback only "
                "(use tls.mode mtls, or bind 127.0.0.1)"
            )
        if not self.tls.https and not is_loopback(self.bind_host):
            raise ValueError(
                f"plain HTTP with bind_host {self.bind_host}: plain HTTP front doors are for "
                "loopback only (use tls.http https, or bind 127.0.0.1)"
            )
        indices = sorted(p.index for p in self.parties)
        if indices != list(range(len(indices))):
            raise ValueError(
                f"party indices must be 0..{len(indices) - 1} once each, got {indices}"
            )
        ports = [port for port, _ in self.listeners()]
        dup = sorted({p for p in ports if ports.count(p) > 1})
        if dup:
            raise ValueError(f"port {dup[0]} is used twice")
        for adv in self.adversaries:
            if adv.party not in indices:
                raise ValueError(
                    f"adversary in front of party {adv.party}, which is not in the topology"
                )
        if self.fusion.min_parties > len(indices):
            raise ValueError(
                f"fusion.min_parties {self.fusion.min_parties} exceeds the {len(indices)} parties"
            )
        if len({a.party for a in self.adversaries}) != len(self.adversaries):
            raise ValueError("at most one adversary per party")
        return self

    def host(self, role: str) -> str:
        """How other roles reach ``role``: loopback locally, the service name in compose /
        Kubernetes."""
        return "127.0.0.1" if self.hostnames == "local" else role

    def party_address(self, index: int) -> str:
        """``HOST:PORT`` of party ``index`` itself (not its adversary)."""
        return f"{self.host(service_name('party', index))}:{self.party(index).port}"

    def party(self, index: int) -> PartyNode:
        """The node of party ``index``."""
        return next(p for p in self.parties if p.index == index)

    def adversary_for(self, index: int) -> AdversaryNode | None:
        """The adversary in front of party ``index``, None when it has none."""
        return next((a for a in self.adversaries if a.party == index), None)

    def fusion_target(self, index: int) -> str:
        """Where the fusion center sends party ``index``'s Embed calls: its adversary if it has
        one."""
        adv = self.adversary_for(index)
        if adv is None:
            return self.party_address(index)
        return f"{self.host(service_name('adversary', index))}:{adv.port}"

    def listeners(self) -> list[tuple[int, str]]:
        """Every port the topology's processes listen on, with what listens there."""
        ports = [(p.port, f"party {p.index}") for p in self.parties]
        for a in self.adversaries:
            ports += [
                (a.port, f"adversary {a.party}"),
                (a.control_port, f"adversary {a.party} control"),
            ]
        return [
            *ports,
            (self.fusion.http_port, "fusion HTTP"),
            (self.fusion.grpc_port, "fusion gRPC"),
        ]

    @property
    def https(self) -> bool:
        """True when the HTTP front doors (fusion API, adversary control) serve HTTPS."""
        return self.tls.https

    @property
    def http_scheme(self) -> str:
        """``https`` or ``http``: the scheme of every HTTP front door of the cluster."""
        return "https" if self.https else "http"

    def fusion_peer(self, index: int) -> str:
        """The service the fusion center reaches for party ``index`` (``adversary-i`` or
        ``party-i``): the name its TLS certificate must carry."""
        return service_name("adversary" if self.adversary_for(index) else "party", index)

    @property
    def num_parties(self) -> int:
        """How many parties the cluster has."""
        return len(self.parties)


def service_name(role: str, index: int | None = None) -> str:
    """``party-3``, ``adversary-1``, ``fusion``: container, compose service and Kubernetes
    Service names."""
    return role if index is None else f"{role}-{index}"


def _override(raw: dict, dotted: str, value: str) -> None:
    """Set ``raw[a][b] = value`` for ``dotted`` = ``a.b`` (creating the section; a non-mapping is
    left for validation to report)."""
    *sections, leaf = dotted.split(".")
    node = raw
    for key in sections:
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            return
        node = node[key]
    node[leaf] = value


def load_topology(path: str | Path, env: Mapping[str, str] | None = None) -> Topology:
    """Read the YAML topology, apply ``COPUR_*`` environment overrides, validate; one-line
    errors."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"topology file {file} does not exist")
    try:
        raw = yaml.safe_load(file.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file} must hold a mapping at the top level")
    env = os.environ if env is None else env
    for var, field in ENV_OVERRIDES.items():
        if env.get(var):
            _override(raw, field, env[var])
    try:
        return Topology.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "topology"
        raise ConfigError(f"{file}: {where}: {err['msg']}") from None
