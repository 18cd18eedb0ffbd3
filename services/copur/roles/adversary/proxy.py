"""The adversary's transport-free core: a compromised party that forwards every call to the real
party (its ``upstream``, reached through the small :class:`Upstream` interface) and corrupts the
embeddings it answers per the live :class:`~copur.roles.adversary.policy.Policy` (via
:mod:`.corrupt`), counting calls, corruptions and upstream failures.

For ``mimic`` and ``sia`` it asks its upstream party for the party's own embeddings of donor samples
(an ``Embed`` call by sample id, as a compromised party could run its extractor on any sample's
features), once per donor: when the policy is put in force, else on the first forwarded call.

A call it refuses ends with one of the :class:`ProxyError` kinds below; the gRPC adapter
(:mod:`.grpc_api`) turns each into its status. No gRPC or HTTP here."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from typing import Any, Final, Protocol

import numpy as np

from copur.errors import CopurError
from copur.roles.adversary.corrupt import AdversaryContext, corrupt_block
from copur.roles.adversary.metrics import AdversaryMetrics
from copur.roles.adversary.policy import Policy, PolicyState
from copur_client.serde import (
    PartyInfo,
    SerdeError,
    embed_request,
    embed_response,
    embed_response_from_proto,
    party_info_from_proto,
)
from copur_client.v1 import party_pb2

__all__ = [
    "DROP_DETAILS",
    "AdversaryCore",
    "BadAnswer",
    "CallerGone",
    "CannotApply",
    "Dropped",
    "ProxyError",
    "Upstream",
    "UpstreamFailed",
]

log = logging.getLogger("copur.roles.adversary")

DROP_DETAILS: Final = "adversary drops the answer"
PROBE_TIMEOUT_S: Final = 2.0


class ProxyError(CopurError):
    """A forwarded call the adversary ends without an answer; each kind below has its own status."""


class UpstreamFailed(ProxyError):
    """The upstream party's call failed: ``code`` is the status it ended with (a gRPC status name
    such as ``NOT_FOUND``), passed on to the caller with the upstream's ``details``."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class CallerGone(ProxyError):
    """A call held by ``delay`` whose caller went away (or the adversary stopped) before it was
    forwarded."""


class BadAnswer(ProxyError):
    """The upstream answered something that is not embeddings, and the policy must corrupt them."""


class CannotApply(ProxyError):
    """The policy in force cannot be applied to this answer (the message says why)."""


class Dropped(ProxyError):
    """The policy (``drop``, or an attack that leaves the block out) answers nothing."""


class Upstream(Protocol):
    """The real party as the core reaches it: ``call`` runs one PartyService method (``Embed``,
    ``EmbedFeatures``, ``Info``) with its request message and returns the reply message, or raises
    :class:`UpstreamFailed`. ``target`` names it in messages."""

    @property
    def target(self) -> str:
        """The upstream's address, for messages and logs."""
        ...

    def call(self, method: str, request: Any, *, timeout: float) -> Any:
        """The reply of ``method`` to ``request`` within ``timeout`` seconds, else
        :class:`UpstreamFailed`."""
        ...


class AdversaryCore:
    """One adversary's behaviour: the live policy (``state``), what it knows of the bundle
    (``context``) and of its upstream party, the donors it fetched, and its ``metrics``. Implements
    the control endpoint's :class:`~copur.roles.adversary.control.PolicyControl` (status,
    set_policy, readiness).

    ``party``: the index of the party it impersonates; None learns it from the upstream's Info.
    Every upstream call is bounded by ``upstream_timeout_s``. Thread-safe: forwarded calls, policy
    changes and probes may run at once. Guarantees: a refused policy changes nothing; every
    forwarded call is counted once, corrupted or not; a held call never outlives its caller nor
    :meth:`close`."""

    def __init__(
        self,
        *,
        upstream: Upstream,
        context: AdversaryContext,
        state: PolicyState,
        metrics: AdversaryMetrics,
        party: int | None = None,
        upstream_timeout_s: float = 5.0,
    ) -> None:
        self.upstream = upstream
        self.context = context
        self.state = state
        self.metrics = metrics
        self.upstream_timeout_s = upstream_timeout_s
        self._party = party
        self._info: PartyInfo | None = None
        self._mismatch: str | None = None
        self._info_lock = threading.Lock()
        self._holds: set[threading.Event] = set()
        self._holds_lock = threading.Lock()
        self._serving = False  # readiness: its gRPC server is up
        self._closed = False  # holds: none may start or go on
        if context.donors is not None:
            context.donors.embed = self.fetch_donor_blocks
        context.check(state.get())  # its donors are fetched on the first call

    @property
    def party(self) -> int | None:
        """The party impersonated: as configured, else from the upstream's Info (None until it
        answered)."""
        return self._party

    # ---------------------------------------------------------------- lifecycle

    def open(self) -> None:
        """The proxy serves (its gRPC server is up): readiness may now say ready."""
        self._serving = True

    def close(self) -> None:
        """The proxy stops serving, for good: not ready any more, and every call held by ``delay``
        ends now (as :class:`CallerGone`), as does any held from now on."""
        with self._holds_lock:
            self._serving = False
            self._closed = True
            for gone in self._holds:
                gone.set()

    # ---------------------------------------------------------------- policy and probes

    def set_policy(self, policy: Policy) -> Policy:
        """Put ``policy`` in force (CopurError if this bundle cannot carry it out, or the blocks of
        its donors cannot be fetched from the upstream: the policy in force is then unchanged);
        return the previous one."""
        donors = self.context.prepare(policy)
        previous = self.state.set(policy)
        log.info(
            "event=policy_change attack=%s params=%s previous=%s party=%s upstream=%s%s",
            policy.attack,
            json.dumps(policy.params, separators=(",", ":"), sort_keys=True),
            previous.attack,
            self.party,
            self.upstream.target,
            f" donors={','.join(map(str, donors))}" if donors else "",
        )
        return previous

    def donors(self, policy: Policy) -> list[int]:
        """The donor sample ids ``policy`` sends this party's blocks of (``mimic``: one; ``sia``:
        the donors of every class); empty for other policies, or while the data set's labels cannot
        be read."""
        try:
            return self.context.donor_ids(policy)
        except CopurError:
            return []

    def status(self) -> dict[str, Any]:
        """``attack``, ``params``, ``party``, ``calls``, ``corrupted``, ``donors``: what GET
        /v1/policy answers."""
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
        """(True, None) once the proxy serves and the upstream answered Info consistently with the
        bundle; else (False, why). Asks the upstream's Info again while it has not answered."""
        if not self._serving:
            return False, "gRPC is not serving"
        self.probe_upstream()
        if self._info is None:
            return False, f"upstream {self.upstream.target} has not answered Info"
        if self._mismatch is not None:
            return False, self._mismatch
        return True, None

    def probe_upstream(self) -> None:
        """Ask the upstream's Info (a short deadline) until it has answered once; a failure is
        logged only."""
        if self._info is not None:
            return
        timeout = min(self.upstream_timeout_s, PROBE_TIMEOUT_S)
        try:
            msg = self.upstream.call("Info", party_pb2.InfoRequest(), timeout=timeout)
        except UpstreamFailed as exc:
            target = self.upstream.target
            log.warning("event=upstream_info_failed upstream=%s code=%s", target, exc.code)
            return
        self._learn(party_info_from_proto(msg))

    def _learn(self, info: PartyInfo) -> None:
        """Record the upstream's Info once: the party index when not configured, and any
        mismatch."""
        with self._info_lock:
            if self._info is not None:
                return
            ctx = self.context
            problems = []
            if info.num_parties != ctx.num_parties:
                problems.append(f"{info.num_parties} parties, the bundle has {ctx.num_parties}")
            if info.emb_dim != ctx.emb_dim:
                problems.append(f"emb_dim {info.emb_dim}, the bundle has {ctx.emb_dim}")
            if self._party is not None and info.index != self._party:
                configured = f"this adversary is configured for party {self._party}"
                problems.append(f"party {info.index}, {configured}")
            if self._party is None and not problems:
                self._party = info.index
            if problems:
                target = self.upstream.target
                self._mismatch = f"upstream {target} reports " + "; ".join(problems)
                log.warning("event=upstream_mismatch upstream=%s detail=%r", target, self._mismatch)
            self._info = info

    # ---------------------------------------------------------------- forwarding

    def _upstream(self, method: str, request: Any) -> Any:
        """One upstream call; a failure is counted by its status and raised as it came."""
        try:
            return self.upstream.call(method, request, timeout=self.upstream_timeout_s)
        except UpstreamFailed as exc:
            self.metrics.upstream_errors.labels(exc.code).inc()
            raise

    def fetch_donor_blocks(self, sample_ids: Sequence[int]) -> np.ndarray:
        """The upstream party's own blocks of ``sample_ids`` (donors of ``mimic`` / ``sia``): one
        Embed call. CopurError (one line) when the upstream fails, or answers for another party."""
        ids = [int(i) for i in sample_ids]
        target = self.upstream.target
        shown = ",".join(map(str, ids[:10])) + (",..." if len(ids) > 10 else "")
        try:
            msg = self._upstream("Embed", embed_request(ids))
        except UpstreamFailed as exc:
            details = " ".join(exc.details.split())
            raise CopurError(
                f"cannot fetch the donor blocks of samples {shown} from upstream {target}: "
                f"{exc.code}{': ' + details if details else ''}"
            ) from None
        block, answering = embed_response_from_proto(msg, what="upstream donor embeddings")
        if self._party is not None and answering != self._party:
            why = f"answered donor blocks as party {answering}, not {self._party}"
            raise CopurError(f"upstream {target} {why}")
        self.metrics.donor_blocks.inc(len(ids))
        log.info(
            "event=donor_blocks_fetched samples=%s party=%s upstream=%s",
            shown,
            self.party,
            target,
        )
        return block

    def relay_info(self, request: Any) -> Any:
        """Info, forwarded as it came (the upstream's failure raised as :class:`UpstreamFailed`);
        the first answer teaches the party index and any mismatch with the bundle."""
        msg = self._upstream("Info", request)
        self._learn(party_info_from_proto(msg))
        return msg

    def _hold(self, policy: Policy, gone: threading.Event) -> None:
        """``delay``: hold the call ``policy.delay_s`` before it is forwarded. ``gone`` (set when
        the caller gives up) or :meth:`close` ends the hold early, as :class:`CallerGone`."""
        if policy.delay_s <= 0:
            return
        with self._holds_lock:
            if self._closed:
                gone.set()
            self._holds.add(gone)
        try:
            if gone.wait(policy.delay_s):
                self.state.record(corrupted=False)
                raise CallerGone("adversary delay: the caller went away")
        finally:
            with self._holds_lock:
                self._holds.discard(gone)

    def relay_embed(self, method: str, request: Any, gone: threading.Event) -> Any:
        """The answer to one ``Embed`` / ``EmbedFeatures`` call (``request``: its message): held per
        the policy, forwarded unchanged (its ``bundle_id`` too), then the upstream's reply itself
        when the policy leaves it alone, else a reply carrying the corrupted block and the upstream
        reply's ``bundle_id``. Raises a :class:`ProxyError` when the call ends without an answer.
        ``gone``: set when the caller goes away (ends a ``delay`` hold)."""
        self.metrics.calls.labels(method).inc()
        self._hold(self.state.get(), gone)
        try:
            response = self._upstream(method, request)
        except UpstreamFailed:
            self.state.record(corrupted=False)
            raise
        policy = self.state.get()
        try:
            block, answering = embed_response_from_proto(response, what="upstream embeddings")
        except SerdeError as exc:
            self.state.record(corrupted=False)
            if not policy.corrupts:
                return response
            raise BadAnswer(str(exc)) from None
        party = self._party if self._party is not None else answering
        try:
            ctx = self.context
            out = corrupt_block(
                block,
                policy=policy,
                party=party,
                num_parties=ctx.num_parties,
                context=ctx,
            )
        except (CopurError, ValueError) as exc:
            self.state.record(corrupted=False)
            raise CannotApply(f"adversary cannot apply '{policy.attack}': {exc}") from None
        self.state.record(corrupted=policy.corrupts)
        if not policy.corrupts:
            return response
        self.metrics.corrupted.labels(policy.attack).inc()
        if out is None:
            raise Dropped(DROP_DETAILS)
        # a lie names the bundle the upstream answered with, as an honest answer would
        return embed_response(out, answering, response.bundle_id)
