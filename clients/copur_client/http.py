"""HTTP clients: :class:`FusionClient` for the fusion center and :class:`AdversaryControl` for an
adversary.

Both send an API key as ``Authorization: Bearer <key>``: given as ``api_key=`` (``admin_key=``
for admin operations), else from ``$COPUR_API_KEY`` (``$COPUR_ADMIN_KEY``); an empty string sends
none. Over ``https://`` both verify the server's certificate against ``ca_file=`` (else
``$COPUR_CA_FILE``, else the system's trust store): a cluster's front doors carry certificates
of its own CA (``ca.pem`` of ``copur certs init``)."""

from __future__ import annotations

import operator
import os
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from copur_client.errors import (
    BadRequest,
    CopurClientError,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    TlsError,
    Unauthorized,
    Unavailable,
)
from copur_client.retry import MAX_BACKOFF_S, RetryPolicy
from copur_client.wire import (
    BundleRef,
    BundlesStatus,
    Certificate,
    PartyBundles,
    Prediction,
    one_line,
)

__all__ = [
    "ADMIN_KEY_ENV",
    "API_KEY_ENV",
    "CA_FILE_ENV",
    "AdversaryControl",
    "FusionClient",
    "bundles_status_from_json",
    "prediction_from_json",
    "resolve_key",
    "tls_verify",
]

API_KEY_ENV = "COPUR_API_KEY"
ADMIN_KEY_ENV = "COPUR_ADMIN_KEY"
CA_FILE_ENV = "COPUR_CA_FILE"


def tls_verify(url: str, ca_file: str | Path | None) -> ssl.SSLContext | bool:
    """How to verify ``url``'s server: a context trusting only ``ca_file`` (else
    ``$COPUR_CA_FILE``) when one is named, else True (the system's trust store). An unreadable or
    malformed CA file is a :class:`TlsError` naming it."""
    path = ca_file if ca_file is not None else os.environ.get(CA_FILE_ENV) or None
    if path is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TlsError(url, f"cannot use CA file {path}: {why}") from None


_TLS_CUT_SHORT = (ssl.SSLEOFError, ssl.SSLZeroReturnError, ssl.SSLSyscallError)
"""A handshake the other end cut short (a server restarting behind a port that accepts): a lost
connection, retried like one; every other TLS error is for good (certificates, not TLS at all)."""


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error under an httpx transport error (certificate not verified, not TLS), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def resolve_key(explicit: str | None, env_var: str) -> str | None:
    """``explicit`` when given (an empty string: no key), else ``$env_var`` when set and
    non-empty, else None."""
    if explicit is not None:
        return explicit or None
    return os.environ.get(env_var) or None


def _server_detail(response: httpx.Response) -> str:
    """The server's one-line ``detail``, else the body (folded to one line), else the reason
    phrase."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if detail is not None:
        return one_line(str(detail))
    return one_line(response.text) or response.reason_phrase


def _retry_after(response: httpx.Response) -> float:
    """The ``Retry-After`` header in seconds (a number; 1 when missing or a date)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0


def _error_for(endpoint: str, response: httpx.Response, key_hint: str = "") -> CopurClientError:
    status, detail = response.status_code, _server_detail(response)
    if status == 401:
        return Unauthorized(endpoint, detail + key_hint, status)
    if status == 403:
        return Forbidden(endpoint, detail, status)
    if status == 429:
        return RateLimited(endpoint, detail, status, _retry_after(response))
    if status == 404:
        return NotFound(endpoint, detail, status)
    if status == 503:
        return Unavailable(endpoint, detail, status)
    if 400 <= status < 500:
        return BadRequest(endpoint, detail, status)
    return ServerError(endpoint, detail, status)


def prediction_from_json(item: Mapping[str, Any]) -> Prediction:
    """One element of ``{"predictions": [...]}`` as a :class:`copur_client.wire.Prediction`."""
    cert = item.get("certificate")
    return Prediction(
        sample_id=int(item["sample_id"]),
        label=int(item["label"]),
        probabilities=[float(x) for x in item["probabilities"]],
        party_scores=[float(x) for x in item["party_scores"]],
        flagged_parties=[int(x) for x in item["flagged_parties"]],
        missing_parties=[int(x) for x in item["missing_parties"]],
        defense=str(item["defense"]),
        certificate=None
        if cert is None
        else Certificate(
            kind=str(cert["kind"]),
            certified_parties=int(cert["certified_parties"]),
            radius=float(cert["radius"]),
            label=int(cert["label"]),
        ),
        bundle_id=str(item.get("bundle_id", "")),
        missing_reasons=[str(x) for x in item.get("missing_reasons", [])],
    )


def _field(item: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    """``item[name]`` when it is a ``kind`` (never a bool standing in for an int), else
    ValueError naming ``where`` and ``name``."""
    value = item.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{where}.{name} is {one_line(repr(value), 80)}, not {kind.__name__}")
    return value


def _objects(data: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    items = _field(data, name, list, "status")
    for k, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"status.{name}[{k}] is {one_line(repr(item), 80)}, not an object")
    return list(items)


def _bundle_ref(item: Mapping[str, Any], where: str) -> BundleRef:
    return BundleRef(
        bundle_id=_field(item, "bundle_id", str, where), path=_field(item, "path", str, where)
    )


def _party_bundles(item: Mapping[str, Any], where: str) -> PartyBundles:
    ids = _field(item, "bundles", list, where)
    if not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{where}.bundles is {one_line(repr(ids), 80)}, not a list of ids")
    return PartyBundles(
        party=_field(item, "party", int, where),
        bundles=list(ids),
        state=_field(item, "state", str, where),
    )


def bundles_status_from_json(
    data: Any, *, endpoint: str = "the fusion center's bundles status"
) -> BundlesStatus:
    """The admin API's status answer (``{"active", "held", "history", "parties"}``) as a
    :class:`copur_client.wire.BundlesStatus`, lists in the server's order; keys it does not know
    are ignored. Anything else (a missing or mistyped field) is a :class:`ServerError` naming
    ``endpoint`` and the field."""
    try:
        if not isinstance(data, Mapping):
            raise ValueError(f"the answer is {one_line(repr(data), 80)}, not an object")
        return BundlesStatus(
            active=_field(data, "active", str, "status"),
            held=[
                _bundle_ref(x, f"status.held[{k}]") for k, x in enumerate(_objects(data, "held"))
            ],
            history=[
                _bundle_ref(x, f"status.history[{k}]")
                for k, x in enumerate(_objects(data, "history"))
            ],
            parties=[
                _party_bundles(x, f"status.parties[{k}]")
                for k, x in enumerate(_objects(data, "parties"))
            ],
        )
    except ValueError as exc:
        raise ServerError(endpoint, f"malformed bundles status: {exc}", 200) from None


class _Refused(Unavailable):
    """A refused connection, or one the server dropped before answering (retried like a 503: the
    server is restarting, and every call retried is idempotent)."""


class _HttpBase:
    """An httpx.Client with the error mapping, retry on refusal and 503 (for idempotent calls,
    ``retries`` times with exponential backoff) and on 429 (``rate_retries`` times, waiting what
    ``Retry-After`` asks, at most ``MAX_RETRY_AFTER_S``)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        backoff_s: float,
        rate_retries: int = 0,
        max_backoff_s: float = MAX_BACKOFF_S,
        ca_file: str | Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.policy = RetryPolicy(
            retries=retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            rate_retries=rate_retries,
        )
        self._client = httpx.Client(
            base_url=self.url, timeout=timeout, verify=tls_verify(self.url, ca_file)
        )

    @property
    def retries(self) -> int:
        return self.policy.retries

    @property
    def rate_retries(self) -> int:
        return self.policy.rate_retries

    def _attempt(
        self,
        endpoint: str,
        method: str,
        path: str,
        json: Any,
        key: str | None,
        timeout: float | None = None,
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else None
        try:
            if timeout is None:  # the client's own
                return self._client.request(method, path, json=json, headers=headers)
            return self._client.request(method, path, json=json, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            raise Timeout(
                endpoint, f"no answer within the timeout ({type(exc).__name__})"
            ) from None
        except httpx.ConnectError as exc:
            tls = _tls_failure(exc)
            if isinstance(tls, ssl.SSLCertVerificationError):
                why = f"the server's certificate did not verify ({tls.verify_message})"
                hint = f"; trust its CA with ca_file= or ${CA_FILE_ENV}"
                raise TlsError(endpoint, f"TLS failed: {why}{hint}") from None
            if tls is not None and not isinstance(tls, _TLS_CUT_SHORT):
                raise TlsError(endpoint, f"TLS failed: {tls.reason or tls}") from None
            raise _Refused(endpoint, f"cannot connect: {exc or type(exc).__name__}") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise _Refused(endpoint, f"connection lost: {exc or type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise Unavailable(endpoint, f"transport error: {exc or type(exc).__name__}") from None

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        retry: bool = True,
        key: str | None = None,
        key_env: str = API_KEY_ENV,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send with ``key`` as the Bearer token; retry per :attr:`policy` (503s and refused
        connections only when ``retry``); every failure raises a :class:`CopurClientError`.
        ``timeout`` (seconds) replaces the client's for each attempt of this call."""
        endpoint = f"{method} {self.url}{path}"
        hint = "" if key else f" (no API key was sent: pass one or set ${key_env})"

        def attempt() -> httpx.Response:
            response = self._attempt(endpoint, method, path, json, key, timeout)
            if not response.is_success:
                raise _error_for(endpoint, response, hint)
            return response

        try:
            return self.policy.call(
                attempt, absent=lambda exc: isinstance(exc, _Refused), retry_unavailable=retry
            )
        except _Refused as exc:  # retried like a 503; raised as a plain Unavailable
            raise Unavailable(exc.endpoint, exc.detail) from None

    @property
    def retry_budget_s(self) -> float:
        """The most time spent waiting between the attempts of one call (503s and lost
        connections)."""
        return self.policy.budget_s

    def _json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        retry: bool = True,
        key: str | None = None,
        key_env: str = API_KEY_ENV,
        timeout: float | None = None,
    ) -> Any:
        response = self._send(
            method, path, json=json, retry=retry, key=key, key_env=key_env, timeout=timeout
        )
        try:
            return response.json()
        except ValueError:
            raise ServerError(
                f"{method} {self.url}{path}", "the answer is not JSON", response.status_code
            ) from None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class FusionClient(_HttpBase):
    """The fusion center's HTTP API. Every call is idempotent, so refused or lost connections and
    503s are retried ``retries`` times with exponential backoff starting at ``backoff_s``, each
    wait at most ``max_backoff_s``: by default about 28 s in all (:attr:`retry_budget_s`), which
    carries a call across a restart of the fusion center. 429s are retried ``rate_retries`` times
    after the wait the server asks; other 4xx answers never are. ``api_key`` (default
    ``$COPUR_API_KEY``, else the admin key) is sent with predictions, ``admin_key`` (default
    ``$COPUR_ADMIN_KEY``, else ``api_key``) with :meth:`parties` and the bundle calls; probes and
    metrics are sent without a key.

    The bundle calls are idempotent too (loading a held bundle changes nothing), with one edge: a
    drop retried after a lost connection whose first attempt did drop answers 409 (not held)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 10,
        backoff_s: float = 0.25,
        api_key: str | None = None,
        admin_key: str | None = None,
        rate_retries: int = 2,
        max_backoff_s: float = MAX_BACKOFF_S,
        ca_file: str | Path | None = None,
    ) -> None:
        super().__init__(
            url,
            timeout=timeout,
            retries=retries,
            backoff_s=backoff_s,
            rate_retries=rate_retries,
            max_backoff_s=max_backoff_s,
            ca_file=ca_file,
        )
        admin = resolve_key(admin_key, ADMIN_KEY_ENV)
        self.api_key = resolve_key(api_key, API_KEY_ENV) or admin  # an admin key may predict too
        self.admin_key = admin or self.api_key

    def predict_json(
        self, sample_ids: Iterable[int], *, defense: str | None = None, certify: bool = False
    ) -> dict[str, Any]:
        """``POST /v1/predict``: the server's JSON answer, as sent."""
        body: dict[str, Any] = {
            "sample_ids": [operator.index(i) for i in sample_ids],
            "certify": bool(certify),
        }
        if defense is not None:
            body["defense"] = defense
        answer = self._json("POST", "/v1/predict", json=body, key=self.api_key)
        if not isinstance(answer, dict) or not isinstance(answer.get("predictions"), list):
            raise ServerError(
                f"POST {self.url}/v1/predict", "the answer has no 'predictions' list", 200
            )
        return answer

    def predict(
        self, sample_ids: Iterable[int], *, defense: str | None = None, certify: bool = False
    ) -> list[Prediction]:
        """``POST /v1/predict``: one :class:`Prediction` per id, in request order."""
        answer = self.predict_json(sample_ids, defense=defense, certify=certify)
        try:
            return [prediction_from_json(p) for p in answer["predictions"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerError(
                f"POST {self.url}/v1/predict", f"malformed prediction: {exc!r}", 200
            ) from None

    def parties(self) -> list[dict[str, Any]]:
        """``GET /v1/parties`` (an admin operation): each party's index, name, address, state,
        failures, flags."""
        answer = self._json("GET", "/v1/parties", key=self.admin_key, key_env=ADMIN_KEY_ENV)
        if not isinstance(answer, dict) or not isinstance(answer.get("parties"), list):
            raise ServerError(f"GET {self.url}/v1/parties", "the answer has no 'parties' list", 200)
        return list(answer["parties"])

    # --- bundles (admin operations): the rolling upgrade's steps ---------------------------------

    def _bundles_call(
        self, method: str, path: str, *, json: Any = None, timeout: float | None = None
    ) -> BundlesStatus:
        """An admin call answering the bundles status, parsed (:func:`bundles_status_from_json`)."""
        answer = self._json(
            method, path, json=json, key=self.admin_key, key_env=ADMIN_KEY_ENV, timeout=timeout
        )
        return bundles_status_from_json(answer, endpoint=f"{method} {self.url}{path}")

    def bundles(self) -> BundlesStatus:
        """``GET /v1/admin/bundles``: the active bundle, those held (active first), those served
        before (latest first) and what each party holds."""
        return self._bundles_call("GET", "/v1/admin/bundles")

    def load_bundle(self, path: str | Path) -> BundlesStatus:
        """``POST /v1/admin/bundles``: the fusion center loads the bundle at ``path`` (a path on
        its host) beside the active one, which stays active; a bundle held already changes
        nothing. :class:`BadRequest` (400) for a bad path or bundle, 409 when two are held."""
        return self._bundles_call("POST", "/v1/admin/bundles", json={"path": str(path)})

    def activate_bundle(
        self, bundle_id: str, *, quorum: int = 0, wait_s: float = 10.0
    ) -> BundlesStatus:
        """``POST /v1/admin/bundles/{bundle_id}/activate``: the fusion center switches to the held
        bundle ``bundle_id`` once at least ``quorum`` parties (0: all) serve it, waiting up to
        ``wait_s`` for them, and answers after the batches still on the old one have finished
        (``history[0]`` is then the old one). Each attempt may take ``wait_s`` plus the client's
        timeout. 409 (a :class:`BadRequest`) when it is not held or too few parties serve it."""
        if quorum < 0 or wait_s < 0:
            raise ValueError(f"quorum and wait_s must be >= 0, got {quorum} and {wait_s}")
        return self._bundles_call(
            "POST",
            f"/v1/admin/bundles/{_segment(bundle_id)}/activate",
            json={"quorum": operator.index(quorum), "wait_s": float(wait_s)},
            timeout=float(wait_s) + self.timeout,
        )

    def drop_bundle(self, bundle_id: str) -> BundlesStatus:
        """``DELETE /v1/admin/bundles/{bundle_id}``: the fusion center drops a held bundle that is
        not the active one. 409 when it is not held or is the active one."""
        return self._bundles_call("DELETE", f"/v1/admin/bundles/{_segment(bundle_id)}")

    def load_party_bundle(self, party: int, path: str | Path) -> BundlesStatus:
        """``POST /v1/admin/parties/{party}/bundles``: party ``party`` loads the bundle at
        ``path`` (a path on the party's host) beside its current one, relayed by the fusion
        center, which then re-reads what the party holds. 404 for an unknown party, 409 when it
        holds two already, 503 (retried) when it cannot be reached."""
        return self._bundles_call(
            "POST",
            f"/v1/admin/parties/{operator.index(party)}/bundles",
            json={"path": str(path)},
        )

    def drop_party_bundle(self, party: int, bundle_id: str) -> BundlesStatus:
        """``DELETE /v1/admin/parties/{party}/bundles/{bundle_id}``: party ``party`` drops bundle
        ``bundle_id``, relayed by the fusion center. 409 when the party does not hold it or holds
        nothing else."""
        return self._bundles_call(
            "DELETE", f"/v1/admin/parties/{operator.index(party)}/bundles/{_segment(bundle_id)}"
        )

    def ready(self) -> bool:
        """``GET /readyz``: True on 200, False on 503 or when the server cannot be reached (no
        retry)."""
        try:
            self._send("GET", "/readyz", retry=False)
        except Unavailable:
            return False
        return True

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus exposition text."""
        return self._send("GET", "/metrics").text


def _segment(value: str) -> str:
    """``value`` as one URL path segment (every reserved character quoted, ``/`` included)."""
    return quote(str(value), safe="")


class AdversaryControl(_HttpBase):
    """An adversary's control endpoint: read and switch its policy (admin operations: ``api_key``
    defaults to ``$COPUR_ADMIN_KEY``). Nothing is retried."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        api_key: str | None = None,
        ca_file: str | Path | None = None,
    ) -> None:
        super().__init__(url, timeout=timeout, retries=0, backoff_s=0.0, ca_file=ca_file)
        self.api_key = resolve_key(api_key, ADMIN_KEY_ENV)

    def get_policy(self) -> dict[str, Any]:
        """``GET /v1/policy``: ``{"attack", "params", "party", "calls", "corrupted", "donors"}``."""
        return dict(self._json("GET", "/v1/policy", key=self.api_key, key_env=ADMIN_KEY_ENV))

    def set_policy(self, attack: str, **params: Any) -> dict[str, Any]:
        """``PUT /v1/policy``; a refused policy raises :class:`BadRequest` (422) with the
        server's reason."""
        body = {"attack": attack, "params": params}
        return dict(
            self._json(
                "PUT", "/v1/policy", json=body, retry=False, key=self.api_key, key_env=ADMIN_KEY_ENV
            )
        )
