"""Running the adversary: its core (:mod:`.proxy`) behind the gRPC PartyService (:mod:`.grpc_api`,
served by the one builder) and the HTTP control endpoint (:mod:`.control`, uvicorn in a background
thread), both started and stopped together; :func:`serve_adversary` runs them until a signal."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from copur.errors import ConfigError, CopurError
from copur.roles.adversary.control import control_api
from copur.roles.adversary.corrupt import AdversaryContext
from copur.roles.adversary.grpc_api import SERVICE, AdversaryServicer
from copur.roles.adversary.metrics import AdversaryMetrics
from copur.roles.adversary.policy import Policy, PolicyState
from copur.roles.adversary.proxy import AdversaryCore
from copur.roles.adversary.upstream import GrpcUpstream
from copur.science.bundle import load_bundle
from copur.transport.auth.guard import Authenticator
from copur.transport.grpc_server import GrpcServer, host_port
from copur.transport.http_server import BackgroundHttpServer
from copur.transport.lifecycle import run_until_signal
from copur.transport.tls.credentials import HttpsFiles, TlsIdentity
from copur.transport.topology import is_loopback
from copur_client.v1 import party_pb2_grpc

__all__ = ["AdversaryApp", "serve_adversary"]

log = logging.getLogger("copur.roles.adversary")


class AdversaryApp:
    """One adversary: gRPC PartyService proxy on ``host:port`` in front of ``upstream``
    (HOST:PORT), HTTP control on ``host:control_port`` (port 0: a free one, read ``.port`` /
    ``.control_port`` after :meth:`start`). ``party``: the index of the party it impersonates;
    None asks the upstream's Info. With ``tls`` its gRPC server demands a client certificate
    signed by ``tls``'s CA, and it dials the upstream presenting ``tls``'s certificate,
    accepting only a server certificate for ``party-<party>`` (any name the CA signed for the
    upstream's host when ``party`` is None). None: plaintext both ways. ``https``: the key pair
    its control endpoint serves HTTPS with; None serves plain HTTP, which only a loopback
    ``host`` may do. ``auth``: the API keys the control endpoint demands (scope ``admin`` for
    ``/v1/policy``); None leaves it open, which only a loopback ``host`` may do (ConfigError
    otherwise). ``data_dir`` overrides where the bundle's data set is (its labels pick the
    donors of ``mimic`` by class and of ``sia``).

    Guarantees: :meth:`start` serves both or neither (a port that cannot be bound is a one-line
    CopurError, and whatever had started is stopped); :meth:`stop` is idempotent; the policy and
    the counts live as long as the app."""

    def __init__(
        self,
        *,
        upstream: str,
        bundle: str | Path,
        party: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int = 0,
        policy: Policy | None = None,
        upstream_timeout_s: float = 5.0,
        tls: TlsIdentity | None = None,
        https: HttpsFiles | None = None,
        auth: Authenticator | None = None,
        data_dir: str | None = None,
    ) -> None:
        if auth is None and not is_loopback(host):
            why = "an open control endpoint is for loopback only"
            raise ConfigError(f"adversary on {host} without API keys: {why}")
        if https is None and not is_loopback(host):
            why = "a plain HTTP control endpoint is for loopback only"
            raise ConfigError(f"adversary on {host} without HTTPS: {why}")
        if upstream_timeout_s <= 0:
            raise ConfigError(f"upstream_timeout_s must be > 0, got {upstream_timeout_s}")
        if party is not None and party < 0:
            raise ConfigError(f"party must be a party index >= 0, got {party}")
        self.upstream = upstream
        self.bundle_path = Path(bundle)
        self.host = host
        self.upstream_timeout_s = upstream_timeout_s
        self.tls = tls
        self.https = https
        self.auth = auth
        self.data_dir = data_dir
        self.state = PolicyState(policy=policy)
        self.metrics = AdversaryMetrics()
        self.registry = self.metrics.registry
        self._party = party
        self._requested_port, self._requested_control_port = port, control_port
        self._core: AdversaryCore | None = None
        self._upstream: GrpcUpstream | None = None
        self._grpc: GrpcServer | None = None
        self._http: BackgroundHttpServer | None = None
        self._port: int | None = None
        self._control_port: int | None = None
        self._lifecycle = threading.Lock()
        self._stopped = threading.Event()

    # ---------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        """The gRPC port bound by :meth:`start`."""
        if self._port is None:
            raise CopurError("adversary is not started")
        return self._port

    @property
    def control_port(self) -> int:
        """The HTTP control port bound by :meth:`start`."""
        if self._control_port is None:
            raise CopurError("adversary is not started")
        return self._control_port

    @property
    def party(self) -> int | None:
        """The party impersonated: as configured, else from the upstream's Info (None until it
        answered)."""
        return self._core.party if self._core is not None else self._party

    @property
    def core(self) -> AdversaryCore:
        """The core of the running (or last run) adversary; CopurError before :meth:`start`."""
        if self._core is None:
            raise CopurError("adversary is not started")
        return self._core

    def start(self) -> None:
        """Load the bundle, bind and serve gRPC and HTTP; ask the upstream's Info (not fatal if it
        is down)."""
        with self._lifecycle:
            if self._grpc is not None:
                raise CopurError("adversary is already started")
            bundle = load_bundle(self.bundle_path)
            context = AdversaryContext.from_bundle(bundle, data_dir=self.data_dir)
            self._upstream = GrpcUpstream(self.upstream, self.tls, party=self._party)
            try:
                self._core = AdversaryCore(
                    upstream=self._upstream,
                    context=context,
                    state=self.state,
                    metrics=self.metrics,
                    party=self._party,
                    upstream_timeout_s=self.upstream_timeout_s,
                )
                self._serve(self._core)
            except BaseException:
                self._shutdown(grace=0)
                raise
            self._stopped.clear()
        self._core.probe_upstream()
        log.info(
            "event=adversary_started grpc=%s control=%s upstream=%s party=%s attack=%s tls=%s",
            host_port(self.host, self.port),
            host_port(self.host, self.control_port),
            self.upstream,
            self.party,
            self.state.get().attack,
            "mtls" if self.tls else "plaintext",
        )

    def _serve(self, core: AdversaryCore) -> None:
        """Start gRPC (a taken port is an error, never shared), then the control endpoint over
        ``core``."""
        self._grpc = GrpcServer(
            name="adversary",
            address=host_port(self.host, self._requested_port),
            services=[SERVICE],
            tls=self.tls,
            exclusive_port=True,
        )
        servicer = AdversaryServicer(core)
        party_pb2_grpc.add_PartyServiceServicer_to_server(servicer, self._grpc.server)
        self._grpc.start().set_serving(True)
        self._port = self._grpc.port
        core.open()
        api = control_api(core, auth=self.auth, registry=self.metrics.registry)
        self._http = BackgroundHttpServer(
            api,
            host=self.host,
            port=self._requested_control_port,
            name="adversary-control",
            https=self.https,
        )
        self._control_port = self._http.start()

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving, idempotent: not ready, held calls end, gRPC health NOT_SERVING, HTTP
        stopped, then gRPC (calls in flight get ``grace`` seconds) and the upstream channel."""
        with self._lifecycle:
            if self._grpc is None and self._upstream is None:
                return
            self._shutdown(grace)
        log.info("event=adversary_stopped upstream=%s party=%s", self.upstream, self.party)

    def _shutdown(self, grace: float) -> None:
        if self._core is not None:
            self._core.close()
        if self._grpc is not None:
            self._grpc.health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.stop()
        if self._grpc is not None:
            self._grpc.stop(grace)
        if self._upstream is not None:
            self._upstream.close()
        self._grpc = self._http = self._upstream = None
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (or ``timeout`` seconds); True once stopped."""
        return self._stopped.wait(timeout)

    # ---------------------------------------------------------------- the core's view

    def set_policy(self, policy: Policy) -> Policy:
        """:meth:`AdversaryCore.set_policy` (CopurError before :meth:`start`)."""
        return self.core.set_policy(policy)

    def donors(self, policy: Policy) -> list[int]:
        """:meth:`AdversaryCore.donors` (CopurError before :meth:`start`)."""
        return self.core.donors(policy)

    def status(self) -> dict[str, Any]:
        """:meth:`AdversaryCore.status`: what GET /v1/policy answers (CopurError before
        :meth:`start`)."""
        return self.core.status()

    def readiness(self) -> tuple[bool, str | None]:
        """Ready once gRPC serves and the upstream answered Info consistently with the bundle."""
        if self._core is None:
            return False, "gRPC is not serving"
        return self._core.readiness()


def serve_adversary(app: AdversaryApp) -> None:
    """``copur adversary``: run ``app`` until SIGTERM or SIGINT (taken when called from the main
    thread; a signal while it starts stops it once up), then stop it gracefully."""
    run_until_signal(app)
