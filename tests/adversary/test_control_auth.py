"""The adversary's control endpoint behind the same keys file as the fusion center: /v1/policy
needs an admin key (401 without or with a wrong one, 403 with a predict key), probes stay
open, and an adversary without keys is refused anywhere but loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from copur.errors import ConfigError
from copur.roles.adversary import AdversaryApp
from copur.transport.auth import Authenticator, load_keys_file


@pytest.fixture
def guarded(upstream: str, mfeat_bundle_dir: Path, api_keys: Any) -> Iterator[httpx.Client]:
    app = AdversaryApp(
        upstream=upstream,
        bundle=mfeat_bundle_dir,
        auth=Authenticator(load_keys_file(api_keys.keys_file)),
    )
    app.start()
    with httpx.Client(base_url=f"http://127.0.0.1:{app.control_port}", timeout=30) as client:
        yield client
    app.stop()


FLIP = {"attack": "flip", "params": {"amp": 3}}


def test_policy_without_a_key_is_401_and_changes_nothing(
    guarded: httpx.Client, api_keys: Any
) -> None:
    # Execute
    put = guarded.put("/v1/policy", json=FLIP)
    get = guarded.get("/v1/policy")
    malformed = guarded.put(
        "/v1/policy", content=b"{", headers={"Content-Type": "application/json"}
    )
    after = guarded.get("/v1/policy", headers=api_keys.headers("admin"))
    # Assert
    assert (put.status_code, get.status_code, malformed.status_code) == (401, 401, 401)
    assert put.headers["www-authenticate"] == "Bearer"
    assert "\n" not in put.json()["detail"]
    assert after.json()["attack"] == "none"


def test_policy_with_a_wrong_key_is_401_and_with_a_predict_key_403(
    guarded: httpx.Client, api_keys: Any
) -> None:
    # Execute
    wrong = guarded.put("/v1/policy", json=FLIP, headers={"Authorization": "Bearer nope"})
    predict = guarded.put("/v1/policy", json=FLIP, headers=api_keys.headers("predict"))
    # Assert
    assert wrong.status_code == 401
    assert (
        predict.status_code == 403
        and predict.json()["detail"] == "API key 'predict' lacks the 'admin' scope"
    )


def test_the_admin_key_switches_the_policy(guarded: httpx.Client, api_keys: Any) -> None:
    # Execute
    put = guarded.put("/v1/policy", json=FLIP, headers=api_keys.headers("admin"))
    refused = guarded.put("/v1/policy", json={"attack": "melt"}, headers=api_keys.headers("admin"))
    # Assert
    assert put.status_code == 200 and put.json()["attack"] == "flip"
    assert refused.status_code == 422 and "melt" in refused.json()["detail"]


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/docs", "/openapi.json"])
def test_probes_metrics_and_docs_stay_open(guarded: httpx.Client, path: str) -> None:
    assert guarded.get(path).status_code == 200


def test_openapi_documents_the_bearer_scheme(guarded: httpx.Client) -> None:
    # Execute
    spec = guarded.get("/openapi.json").json()
    # Assert
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/policy"]["put"]["security"] == [{"apiKey": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]


def test_an_adversary_without_keys_is_refused_off_loopback(
    upstream: str, mfeat_bundle_dir: Path
) -> None:
    with pytest.raises(ConfigError, match="adversary on 0.0.0.0 without API keys"):
        AdversaryApp(upstream=upstream, bundle=mfeat_bundle_dir, host="0.0.0.0")
