"""Fuzz the fusion center's HTTP API from its own OpenAPI document (schemathesis): schema-valid
and schema-violating requests against a real handler over real parties. With a valid key
nothing is a 5xx and every answer matches the documented schema; without a key every guarded
operation answers only 401.

Each operation's cases come from ``APIOperation.as_strategy`` under a bounded Hypothesis run
(``MAX_EXAMPLES`` per operation and generation mode, derandomized); schemathesis's pytest loader
is not used (its lazy fixtures read ``Function._nodeid``, which pytest 9 removed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
)

from frontdoor import FrontDoor, serve_front_door

MAX_EXAMPLES = 30
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=10_000,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(scope="module")
def door(mfeat_bundle_dir: Path, api_keys: Any) -> Iterator[FrontDoor]:
    with serve_front_door(mfeat_bundle_dir, keys_file=api_keys.keys_file) as running:
        yield running


def _operations(door: FrontDoor, path_regex: str | None = None) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{door.url}/openapi.json")
    if path_regex is not None:
        schema = schema.include(path_regex=path_regex)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operations: list[Any], check: Callable[[Any], None]) -> list[str]:
    """Run ``check`` on MAX_EXAMPLES generated cases per operation and mode; the labels of what
    ran."""
    ran = []
    for operation in operations:
        # An operation without a body or parameters has no input to violate: positive cases only.
        modes = (
            MODES
            if len(operation.body) or any(True for _ in operation.iter_parameters())
            else MODES[:1]
        )
        for mode in modes:

            @SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: Any) -> None:
                check(case)

            run()
            ran.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    return ran


def test_with_the_admin_key_nothing_is_a_server_error_and_answers_match_the_schema(
    door: FrontDoor, api_keys: Any
) -> None:
    # Prepare: every operation; the admin key may call all of them (admin implies predict)
    operations = _operations(door)

    def check(case: Any) -> None:
        case.call_and_validate(
            headers=api_keys.headers("admin"),
            checks=[not_a_server_error, response_schema_conformance, negative_data_rejection],
        )

    # Execute / Assert (call_and_validate raises on a failed check)
    ran = _fuzz(operations, check)
    assert {
        "POST /v1/predict positive",
        "POST /v1/predict negative",
        "GET /healthz positive",
    } <= set(ran)


def test_without_a_key_every_guarded_operation_answers_401(door: FrontDoor) -> None:
    # Prepare: the operations that demand a key
    operations = _operations(door, path_regex="^/v1/")

    def check(case: Any) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        response = case.call()
        assert response.status_code == 401, (
            case.method,
            case.path,
            response.status_code,
            response.text,
        )

    # Execute / Assert
    ran = _fuzz(operations, check)
    assert sorted({label.rsplit(" ", 1)[0] for label in ran}) == [
        "DELETE /v1/admin/bundles/{bundle_id}",
        "DELETE /v1/admin/parties/{party}/bundles/{bundle_id}",
        "GET /v1/admin/bundles",
        "GET /v1/parties",
        "POST /v1/admin/bundles",
        "POST /v1/admin/bundles/{bundle_id}/activate",
        "POST /v1/admin/parties/{party}/bundles",
        "POST /v1/predict",
    ]
