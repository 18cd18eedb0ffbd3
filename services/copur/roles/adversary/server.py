"""The adversary service: a compromised party standing where the party's address is expected.

It speaks the PartyService protocol (plus gRPC health and reflection), forwards every call to the real
party (``upstream``) and corrupts the embeddings it answers per the live :class:`Policy`; an HTTP control
endpoint (FastAPI under uvicorn, in a background thread) reads and switches the policy.

For ``mimic`` and ``sia`` it asks its upstream party for the party's own embeddings of donor samples (an
``Embed`` call by sample id, as a compromised party could run its extractor on any sample's features),
once per donor: when the policy is put in force, else on the first forwarded call.
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path
from typing import Any, Final, NoReturn

import grpc
import numpy as np
import uvicorn
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, Counter

from copur.errors import ConfigError, CopurError
from copur.roles.adversary.control import control_api
from copur.roles.adversary.corrupt import AdversaryContext, corrupt_block
from copur.roles.adversary.policy import Policy, PolicyState
from copur.science.bundle import load_bundle
from copur.transport.auth.guard import Authenticator
from copur.transport.grpcutil import RECONNECT_OPTIONS
from copur.transport.tls.credentials import TlsIdentity, add_port, channel
from copur.transport.topology import is_loopback, service_name
from copur_client.serde import (
    PartyInfo,
    SerdeError,
    embed_request,
    embed_response,
    embed_response_from_proto,
    party_info_from_proto,
)
from copur_client.v1 import party_pb2, party_pb2_grpc

__all__ = ["DROP_DETAILS", "AdversaryApp", "serve_adversary"]

log = logging.getLogger("copur.roles.adversary")

DROP_DETAILS: Final = "adversary drops the answer"
PARTY_SERVICE: Final = party_pb2.DESCRIPTOR.services_by_name["PartyService"].full_name
STARTUP_TIMEOUT_S: Final = 10.0
PROBE_TIMEOUT_S: Final = 2.0
HOLD_SLICE_S: Final = 0.05
"""How often a call held by ``delay`` checks whether its caller is still there."""
MAX_MESSAGE_BYTES: Final = 64 * 1024 * 1024
_MESSAGE_OPTIONS: Final = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    """End the call with ``code`` and ``details`` (``context.abort`` raises)."""
    context.abort(code, details)
    raise AssertionError("grpc context.abort returned")  # pragma: no cover


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Proxy(party_pb2_grpc.PartyServiceServicer):
    """PartyService: forward to the upstream party, corrupt the embeddings on the way back."""

    def __init__(self, app: AdversaryApp) -> None:
        self._app = app

    def Embed(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._app._forward_embed("Embed", request, context)

    def EmbedFeatures(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._app._forward_embed("EmbedFeatures", request, context)

    def Info(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._app._forward_info(request, context)


class AdversaryApp:
    """One adversary: gRPC PartyService proxy on ``host:port`` in front of ``upstream`` (HOST:PORT), HTTP
    control on ``host:control_port`` (port 0: a free one, read ``.port`` / ``.control_port`` after
    :meth:`start`). ``party``: the index of the party it impersonates; None asks the upstream's Info.
    With ``tls`` its gRPC server demands a client certificate signed by ``tls``'s CA, and it dials the
    upstream presenting ``tls``'s certificate, accepting only a server certificate for ``party-<party>``
    (any name the CA signed for the upstream's host when ``party`` is None). None: plaintext both ways.
    ``auth``: the API keys the control endpoint demands (scope ``admin`` for ``/v1/policy``); None leaves
    it open, which only a loopback ``host`` may do (ConfigError otherwise). ``data_dir`` overrides where the
    bundle's data set is (its labels pick the donors of ``mimic`` by class and of ``sia``)."""

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
        auth: Authenticator | None = None,
        data_dir: str | None = None,
    ) -> None:
        if auth is None and not is_loopback(host):
            raise ConfigError(f"adversary on {host} without API keys: an open control endpoint is for loopback only")
        if upstream_timeout_s <= 0:
            raise ConfigError(f"upstream_timeout_s must be > 0, got {upstream_timeout_s}")
        if party is not None and party < 0:
            raise ConfigError(f"party must be a party index >= 0, got {party}")
        self.upstream = upstream
        self.bundle_path = Path(bundle)
        self.host = host
        self.upstream_timeout_s = upstream_timeout_s
        self.tls = tls
        self.auth = auth
        self.data_dir = data_dir
        self.state = PolicyState(policy=policy)
        self.registry = CollectorRegistry()
        self._calls = Counter(
            "copur_adversary_calls", "Calls forwarded to the upstream party", ["method"], registry=self.registry
        )
        self._corrupted = Counter(
            "copur_adversary_corrupted", "Answers corrupted (drops included)", ["attack"], registry=self.registry
        )
        self._upstream_errors = Counter(
            "copur_adversary_upstream_errors", "Upstream calls that failed", ["code"], registry=self.registry
        )
        self._donor_blocks = Counter(
            "copur_adversary_donor_blocks",
            "Donor blocks fetched from the upstream party (mimic, sia; each donor once)",
            registry=self.registry,
        )
        self._party = party
        self._requested_port, self._requested_control_port = port, control_port
        self._port: int | None = None
        self._control_port: int | None = None
        self._context: AdversaryContext | None = None
        self._info: PartyInfo | None = None
        self._mismatch: str | None = None
        self._info_lock = threading.Lock()
        self._lifecycle = threading.Lock()
        self._stopped = threading.Event()
        self._serving = False
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._grpc: grpc.Server | None = None
        self._health: health.HealthServicer | None = None
        self._http: uvicorn.Server | None = None
        self._http_thread: threading.Thread | None = None

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
        """The party impersonated: as configured, else from the upstream's Info (None until it answered)."""
        return self._party

    def start(self) -> None:
        """Load the bundle, bind and serve gRPC and HTTP; ask the upstream's Info (not fatal if it is down)."""
        with self._lifecycle:
            if self._grpc is not None:
                raise CopurError("adversary is already started")
            self._context = AdversaryContext.from_bundle(
                load_bundle(self.bundle_path), data_dir=self.data_dir, embed=self._embed_upstream
            )
            self._context.check(self.state.get())  # its donors are fetched on the first call
            try:
                self._start_grpc()
                self._start_http()
            except BaseException:
                self._shutdown()
                raise
            self._stopped.clear()
        self._probe_upstream()
        policy = self.state.get()
        log.info(
            "event=adversary_started grpc=%s control=%s upstream=%s party=%s attack=%s tls=%s",
            _address(self.host, self.port),
            _address(self.host, self.control_port),
            self.upstream,
            self.party,
            policy.attack,
            "mtls" if self.tls else "plaintext",
        )

    def _start_grpc(self) -> None:
        upstream_name = service_name("party", self._party) if self._party is not None else None
        self._channel = channel(
            self.upstream, self.tls, server_name=upstream_name, options=[*_MESSAGE_OPTIONS, *RECONNECT_OPTIONS]
        )
        self._stub = party_pb2_grpc.PartyServiceStub(self._channel)
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="adversary-grpc"),
            options=[*_MESSAGE_OPTIONS, ("grpc.so_reuseport", 0)],  # a taken port is an error, not shared
        )
        party_pb2_grpc.add_PartyServiceServicer_to_server(_Proxy(self), server)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (PARTY_SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        address = _address(self.host, self._requested_port)
        port = add_port(server, address, self.tls)
        if not port:
            raise CopurError(f"adversary cannot bind gRPC on {address}")
        self._grpc = server
        server.start()
        self._port = port
        for service in ("", PARTY_SERVICE):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._serving = True

    def _start_http(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._requested_control_port))
        except OSError as exc:
            sock.close()
            raise CopurError(
                f"adversary cannot bind HTTP control on {_address(self.host, self._requested_control_port)}: "
                f"{exc.strerror}"
            ) from None
        self._control_port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            control_api(self), log_config=None, access_log=False, lifespan="off", log_level="warning"
        )
        self._http = uvicorn.Server(config)
        self._http_thread = threading.Thread(
            target=self._http.run, kwargs={"sockets": [sock]}, name="adversary-control", daemon=True
        )
        self._http_thread.start()
        waited = 0.0
        while not self._http.started:
            if not self._http_thread.is_alive() or waited > STARTUP_TIMEOUT_S:
                raise CopurError(f"adversary HTTP control did not start on {_address(self.host, self._control_port)}")
            self._stopped.wait(0.01)
            waited += 0.01

    def stop(self) -> None:
        """Stop serving (gRPC health NOT_SERVING, HTTP and gRPC shut down); idempotent."""
        with self._lifecycle:
            if self._grpc is None:
                return
            self._shutdown()
        log.info("event=adversary_stopped upstream=%s party=%s", self.upstream, self.party)

    def _shutdown(self) -> None:
        self._serving = False
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        if self._http is not None:
            self._http.should_exit = True
        if self._http_thread is not None:
            self._http_thread.join(timeout=STARTUP_TIMEOUT_S)
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
        if self._channel is not None:
            self._channel.close()
        self._grpc = self._http = self._http_thread = self._channel = self._health = None
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until :meth:`stop` (or ``timeout`` seconds); True once stopped."""
        return self._stopped.wait(timeout)

    # ---------------------------------------------------------------- policy and probes

    def set_policy(self, policy: Policy) -> Policy:
        """Put ``policy`` in force (CopurError if this bundle cannot carry it out, or the blocks of its donors
        cannot be fetched from the upstream: the policy in force is then unchanged); return the previous one."""
        donors: list[int] = []
        if self._context is not None:
            donors = self._context.prepare(policy)
        previous = self.state.set(policy)
        log.info(
            "event=policy_change attack=%s params=%s previous=%s party=%s upstream=%s%s",
            policy.attack,
            json.dumps(policy.params, separators=(",", ":"), sort_keys=True),
            previous.attack,
            self.party,
            self.upstream,
            f" donors={','.join(map(str, donors))}" if donors else "",
        )
        return previous

    def donors(self, policy: Policy) -> list[int]:
        """The donor sample ids ``policy`` sends this party's blocks of (``mimic``: one; ``sia``: the donors
        of every class); empty for other policies, or while the data set's labels cannot be read."""
        if self._context is None:
            return []
        try:
            return self._context.donor_ids(policy)
        except CopurError:
            return []

    def status(self) -> dict[str, Any]:
        """``attack``, ``params``, ``party``, ``calls``, ``corrupted``, ``donors``: what GET /v1/policy answers."""
        snap = self.state.snapshot()
        return {
            "attack": snap.policy.attack,
            "params": dict(snap.policy.params),
            "party": self.party,
            "calls": snap.calls,
            "corrupted": snap.corrupted,
            "donors": self.donors(snap.policy),
        }

    def readiness(self) -> tuple[bool, str | None]:
        """Ready once gRPC serves and the upstream answered Info consistently with the bundle."""
        if not self._serving:
            return False, "gRPC is not serving"
        self._probe_upstream()
        if self._info is None:
            return False, f"upstream {self.upstream} has not answered Info"
        if self._mismatch is not None:
            return False, self._mismatch
        return True, None

    def _probe_upstream(self) -> None:
        if self._info is not None or self._stub is None:
            return
        try:
            msg = self._stub.Info(party_pb2.InfoRequest(), timeout=min(self.upstream_timeout_s, PROBE_TIMEOUT_S))
        except grpc.RpcError as exc:
            log.warning("event=upstream_info_failed upstream=%s code=%s", self.upstream, exc.code().name)
            return
        self._learn(party_info_from_proto(msg))

    def _learn(self, info: PartyInfo) -> None:
        """Record the upstream's Info once: the party index when not configured, and any mismatch."""
        with self._info_lock:
            if self._info is not None:
                return
            ctx = self._context
            problems = []
            if ctx is not None and info.num_parties != ctx.num_parties:
                problems.append(f"{info.num_parties} parties, the bundle has {ctx.num_parties}")
            if ctx is not None and info.emb_dim != ctx.emb_dim:
                problems.append(f"emb_dim {info.emb_dim}, the bundle has {ctx.emb_dim}")
            if self._party is not None and info.index != self._party:
                problems.append(f"party {info.index}, this adversary is configured for party {self._party}")
            if self._party is None and not problems:
                self._party = info.index
            if problems:
                self._mismatch = f"upstream {self.upstream} reports " + "; ".join(problems)
                log.warning("event=upstream_mismatch upstream=%s detail=%r", self.upstream, self._mismatch)
            self._info = info

    # ---------------------------------------------------------------- forwarding

    def _embed_upstream(self, sample_ids: Sequence[int]) -> np.ndarray:
        """The upstream party's own blocks of ``sample_ids`` (donors of ``mimic`` / ``sia``): one Embed call.
        CopurError (one line) when the upstream fails, or answers for another party."""
        ids = [int(i) for i in sample_ids]
        shown = ",".join(map(str, ids[:10])) + (",..." if len(ids) > 10 else "")
        if self._stub is None:
            raise CopurError("adversary is not started")
        try:
            msg = self._stub.Embed(embed_request(ids), timeout=self.upstream_timeout_s)
        except grpc.RpcError as exc:
            self._upstream_errors.labels(exc.code().name).inc()
            details = " ".join((exc.details() or "").split())
            raise CopurError(
                f"cannot fetch the donor blocks of samples {shown} from upstream {self.upstream}: "
                f"{exc.code().name}{': ' + details if details else ''}"
            ) from None
        block, answering = embed_response_from_proto(msg, what="upstream donor embeddings")
        if self._party is not None and answering != self._party:
            raise CopurError(f"upstream {self.upstream} answered donor blocks as party {answering}, not {self._party}")
        self._donor_blocks.inc(len(ids))
        log.info("event=donor_blocks_fetched samples=%s party=%s upstream=%s", shown, self.party, self.upstream)
        return block

    def _forward_info(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            msg = self._stub.Info(request, timeout=self.upstream_timeout_s)
        except grpc.RpcError as exc:
            self._upstream_errors.labels(exc.code().name).inc()
            _abort(context, exc.code(), exc.details() or "")
        self._learn(party_info_from_proto(msg))
        return msg

    def _hold(self, policy: Policy, context: grpc.ServicerContext) -> None:
        """``delay``: hold the call ``policy.delay_s`` before it is forwarded. A caller that gives up (its
        deadline passed) or the adversary stopping ends the hold early: a held call never outlives both."""
        end = time.monotonic() + policy.delay_s
        while (left := end - time.monotonic()) > 0:
            if self._stopped.wait(min(left, HOLD_SLICE_S)) or not context.is_active():
                self.state.record(corrupted=False)
                _abort(context, grpc.StatusCode.CANCELLED, "adversary delay: the caller went away")

    def _forward_embed(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        self._calls.labels(method).inc()
        self._hold(self.state.get(), context)
        try:
            response = getattr(self._stub, method)(request, timeout=self.upstream_timeout_s)
        except grpc.RpcError as exc:
            self._upstream_errors.labels(exc.code().name).inc()
            self.state.record(corrupted=False)
            _abort(context, exc.code(), exc.details() or "")
        policy = self.state.get()
        try:
            block, answering = embed_response_from_proto(response, what="upstream embeddings")
        except SerdeError as exc:
            self.state.record(corrupted=False)
            if not policy.corrupts:
                return response
            _abort(context, grpc.StatusCode.INTERNAL, str(exc))
        assert self._context is not None
        party = self._party if self._party is not None else answering
        try:
            out = corrupt_block(
                block, policy=policy, party=party, num_parties=self._context.num_parties, context=self._context
            )
        except (CopurError, ValueError) as exc:
            self.state.record(corrupted=False)
            _abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"adversary cannot apply '{policy.attack}': {exc}")
        corrupted = policy.corrupts
        self.state.record(corrupted=corrupted)
        if not corrupted:
            return response
        self._corrupted.labels(policy.attack).inc()
        if out is None:
            _abort(context, grpc.StatusCode.UNAVAILABLE, DROP_DETAILS)
        return embed_response(out, answering)


def serve_adversary(
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
    auth: Authenticator | None = None,
    data_dir: str | None = None,
) -> None:
    """Run an :class:`AdversaryApp` until SIGTERM or SIGINT (handled when called from the main thread)."""
    app = AdversaryApp(
        upstream=upstream,
        bundle=bundle,
        party=party,
        host=host,
        port=port,
        control_port=control_port,
        policy=policy,
        upstream_timeout_s=upstream_timeout_s,
        tls=tls,
        auth=auth,
        data_dir=data_dir,
    )
    requested = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, frame: object) -> None:
            log.info("event=signal signal=%s", signal.Signals(signum).name)
            requested.set()

        # Installed before start: a signal while starting stops the app once it is up, never kills it half-way.
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, _on_signal)
    try:
        app.start()
        gc.freeze()  # the process's long-lived objects: out of the collector's reach (no long full collections)
        while not requested.wait(timeout=0.5):
            pass
    finally:
        app.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
