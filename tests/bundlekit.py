"""Helpers of the bundle administration tests against a real fusion center: its HTTP admin API
(``/v1/admin``, scope ``admin``) and ``/v1/predict`` as one small client, the walk back to one
bundle held everywhere (so that a test leaves the state it found), and a copy of a bundle under
another id."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client.parser import text_string_to_metric_families

__all__ = ["AdminApi", "Keys", "copy_bundle", "detail", "ok"]

TIMEOUT_S = 120.0  # a load reads a bundle; an activate waits for parties and drains batches
SETTLE_S = 5.0  # party states follow the Info probes: every 2 s, and at once after a relay


class Keys(Protocol):
    """The ``api_keys`` fixture: the keys file and the development keys of both scopes."""

    @property
    def keys_file(self) -> Path: ...

    @property
    def predict(self) -> str: ...

    @property
    def admin(self) -> str: ...

    def headers(self, scope: str = "predict") -> dict[str, str]: ...


def ok(response: httpx.Response) -> Any:
    """The JSON body of a 200 answer (AssertionError with the body otherwise)."""
    assert response.status_code == 200, f"{response.status_code}: {response.text}"
    return response.json()


def detail(response: httpx.Response) -> str:
    """The one-line ``detail`` of an error answer."""
    text = response.json()["detail"]
    assert isinstance(text, str) and text and "\n" not in text, response.text
    return text


def copy_bundle(src: Path, dst: Path, *, created: str | None = None) -> Path:
    """A copy of the bundle ``src`` at ``dst``; with ``created``, its manifest's ``created`` is
    changed, which changes the bundle's id and nothing else."""
    shutil.copytree(src, dst)
    if created is not None:
        manifest = dst / "manifest.json"
        data = json.loads(manifest.read_text())
        data["created"] = created
        manifest.write_text(json.dumps(data, indent=2))
    return dst


@dataclass(frozen=True)
class AdminApi:
    """The fusion center at ``url``: its admin routes with ``admin_key``, predictions with
    ``predict_key``. Each route method returns the raw answer; :func:`ok` reads a 200."""

    url: str
    admin_key: str
    predict_key: str

    def _headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """``method path`` with the admin key (and ``body`` as JSON when given)."""
        kwargs: dict[str, Any] = {} if body is None else {"json": body}
        return httpx.request(
            method,
            f"{self.url}{path}",
            headers=self._headers(self.admin_key),
            timeout=TIMEOUT_S,
            **kwargs,
        )

    # ------------------------------------------------------------------ the admin routes

    def bundles(self) -> httpx.Response:
        return self.call("GET", "/v1/admin/bundles")

    def status(self) -> dict[str, Any]:
        """``GET /v1/admin/bundles``, which must answer 200."""
        status: dict[str, Any] = ok(self.bundles())
        return status

    def load(self, path: str | Path) -> httpx.Response:
        return self.call("POST", "/v1/admin/bundles", {"path": str(path)})

    def activate(self, bundle_id: str, body: Any = None) -> httpx.Response:
        return self.call("POST", f"/v1/admin/bundles/{bundle_id}/activate", body)

    def drop(self, bundle_id: str) -> httpx.Response:
        return self.call("DELETE", f"/v1/admin/bundles/{bundle_id}")

    def party_load(self, party: int, path: str | Path) -> httpx.Response:
        return self.call("POST", f"/v1/admin/parties/{party}/bundles", {"path": str(path)})

    def party_drop(self, party: int, bundle_id: str) -> httpx.Response:
        return self.call("DELETE", f"/v1/admin/parties/{party}/bundles/{bundle_id}")

    def parties(self) -> list[dict[str, Any]]:
        """``GET /v1/parties``' parties."""
        parties: list[dict[str, Any]] = ok(self.call("GET", "/v1/parties"))["parties"]
        return parties

    # ------------------------------------------------------------------ predictions, metrics

    def predict(
        self, ids: list[int], defense: str | None = None, client: httpx.Client | None = None
    ) -> list[dict[str, Any]]:
        """``POST /v1/predict`` of ``ids`` with the predict key (200 required); the predictions."""
        body: dict[str, Any] = {"sample_ids": ids}
        if defense is not None:
            body["defense"] = defense
        url, headers = f"{self.url}/v1/predict", self._headers(self.predict_key)
        response = (
            client.post(url, json=body, headers=headers, timeout=TIMEOUT_S)
            if client is not None
            else httpx.post(url, json=body, headers=headers, timeout=TIMEOUT_S)
        )
        predictions: list[dict[str, Any]] = ok(response)["predictions"]
        return predictions

    def metric(self, name: str, **labels: str) -> float:
        """The value of sample ``name`` with exactly ``labels`` on ``/metrics`` (0 when absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def settle(
        self, check: Callable[[dict[str, Any]], bool], timeout: float = SETTLE_S
    ) -> dict[str, Any]:
        """``GET /v1/admin/bundles`` until ``check(status)`` holds, for up to ``timeout`` s (a
        party's state is what the last Info probe saw); the last status read either way, for the
        caller to assert on."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if check(status) or time.monotonic() >= deadline:
                return status
            time.sleep(0.1)

    def states(self, timeout: float = SETTLE_S) -> list[str]:
        """Every party's state once all are ``up`` (or ``timeout`` passed)."""
        status = self.settle(lambda s: all(p["state"] == "up" for p in s["parties"]), timeout)
        return [p["state"] for p in status["parties"]]

    # ------------------------------------------------------------------ back to one bundle

    def restore(self, path: str | Path, bundle_id: str) -> dict[str, Any]:
        """Walk back to ``bundle_id`` (at ``path``) held and active alone at the fusion center
        and held alone by every party, every party ``up``; the status then."""
        status = self.status()
        held = [b["bundle_id"] for b in status["held"]]
        if bundle_id not in held:
            if len(held) >= 2:
                ok(self.drop(next(b for b in held if b != status["active"])))
            ok(self.load(path))
        for party in self.status()["parties"]:
            if bundle_id not in party["bundles"]:
                if len(party["bundles"]) >= 2:
                    ok(self.party_drop(party["party"], party["bundles"][-1]))
                ok(self.party_load(party["party"], path))
        if self.status()["active"] != bundle_id:
            ok(self.activate(bundle_id, {"quorum": 0, "wait_s": 10}))
        for held_id in [b["bundle_id"] for b in self.status()["held"]]:
            if held_id != bundle_id:
                ok(self.drop(held_id))
        for party in self.status()["parties"]:
            for other in party["bundles"]:
                if other != bundle_id:
                    ok(self.party_drop(party["party"], other))
        return self.settle(lambda s: all(p["state"] == "up" for p in s["parties"]), timeout=10)
