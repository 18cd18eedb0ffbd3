"""The OpenAPI document says what the server does: ``schemathesis run --checks all`` (the CLI, as
an operator would run it) against a live HTTPS front door with a key finds nothing, over every
operation the document lists. A negative control runs the same command with a document that has
lost one of its constraints (``sample_ids`` may be empty again) and must fail: the run can tell."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from frontdoor import FrontDoor, serve_front_door

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
EXAMPLES = 50  # per operation and phase: enough for schemathesis's coverage phase to hit every
# boundary (empty and oversized lists, unknown enum values, wrong types) in a few seconds


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, api_keys: Any, tls_dir: Path) -> Iterator[FrontDoor]:
    # max_request_ids 16: the documented v2 infer body has one branch per request size, so a small
    # limit keeps the run short; the contract is the same at any limit
    with serve_front_door(
        mfeat_bundle_dir, keys_file=api_keys.keys_file, https_dir=tls_dir, max_request_ids=16
    ) as running:
        yield running


def _openapi(door: FrontDoor) -> dict[str, Any]:
    assert door.ca is not None
    verify = ssl.create_default_context(cafile=str(door.ca))
    return dict(httpx.get(f"{door.url}/openapi.json", verify=verify, timeout=30).json())


def _schemathesis(
    door: FrontDoor, schema: str, api_keys: Any, workdir: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """The CLI run, in ``workdir`` (it keeps a ``.schemathesis`` folder there)."""
    assert door.ca is not None
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            schema,
            "--checks",
            "all",
            "--tls-verify",
            str(door.ca),
            "--header",
            f"Authorization: {api_keys.headers('admin')['Authorization']}",
            "--max-examples",
            str(EXAMPLES),
            "--seed",
            "1",
            "--no-color",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


def test_schemathesis_checks_all_find_nothing_on_the_live_https_front_door(
    door: FrontDoor, api_keys: Any, tmp_path: Path
) -> None:
    # Prepare: every operation the document lists
    operations = sum(len(methods) for methods in _openapi(door)["paths"].values())

    # Execute
    run = _schemathesis(door, f"{door.url}/openapi.json", api_keys, tmp_path)

    # Assert: a clean run over every operation, over HTTPS
    assert door.url.startswith("https://")
    assert run.returncode == 0, run.stdout[-6000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
    selected = re.search(r"Operations:\s+(\d+) selected / (\d+) total", run.stdout)
    assert selected is not None, run.stdout[-3000:]
    assert int(selected.group(1)) == int(selected.group(2)) == operations


def test_the_same_run_fails_when_the_document_allows_what_the_server_refuses(
    door: FrontDoor, api_keys: Any, tmp_path: Path
) -> None:
    # Prepare: the live document with the constraint on sample_ids removed (the gap it once had)
    document = _openapi(door)
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    del body["schema"]["properties"]["sample_ids"]["minItems"]
    loosened = tmp_path / "openapi.json"
    loosened.write_text(json.dumps(document))

    # Execute
    run = _schemathesis(
        door, str(loosened), api_keys, tmp_path, "--url", door.url, "--include-path", "/v1/predict"
    )

    # Assert: the server's 400 for an empty list is now a schema-valid request rejected
    assert run.returncode != 0, run.stdout[-3000:]
    assert "Schema-valid request rejected" in run.stdout, run.stdout[-3000:]
