"""The auth core: keys files (hashes only, strict format, one-line errors), `copur keys init|add`,
constant-time verification, scopes, the token bucket, and the topology's ``auth`` section."""

from __future__ import annotations

import hmac
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from copur.cli import app
from copur.errors import ConfigError
from copur.transport.auth import (
    Authenticator,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    add_key,
    dev_key,
    hash_key,
    init_keys,
    load_authenticator,
    load_keys_file,
    parse_bearer,
)
from copur.transport.auth.keys import KeyEntry, KeysFile
from copur.transport.auth.ratelimit import TokenBucket
from copur.transport.topology import load_topology

# --- keys files
# ------------------------------------------------------------------------------------------


def test_keys_init_writes_hashes_only_and_private_key_files(tmp_path: Path) -> None:
    # Execute
    result = init_keys(tmp_path / "certs")
    # Assert
    text = result.keys_file.read_text()
    entries = {e["name"]: e for e in json.loads(text)["keys"]}
    for scope, path in result.key_files.items():
        key = path.read_text().strip()
        assert len(key) >= 40
        assert key not in text  # the raw key is never in the keys file
        assert entries[scope]["sha256"] == hash_key(key) and entries[scope]["scopes"] == [scope]
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert result.key_files["predict"] == tmp_path / "certs" / "keys" / "predict.key"
    assert dev_key(result.keys_file, "admin") == result.key_files["admin"].read_text().strip()


def test_keys_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    # Prepare
    first = init_keys(tmp_path)
    before = first.keys_file.read_text()
    # Execute
    with pytest.raises(ConfigError, match="api-keys.json already exists \\(use --force"):
        init_keys(tmp_path)
    forced = init_keys(tmp_path, force=True)
    # Assert
    assert forced.keys_file.read_text() != before


def test_keys_add_returns_the_key_once_and_stores_its_hash(tmp_path: Path) -> None:
    # Prepare
    file = init_keys(tmp_path).keys_file
    # Execute
    key = add_key(file, "ops", "admin", rate_per_s=5)
    # Assert
    text = file.read_text()
    assert key not in text
    ops = next(e for e in load_keys_file(file).keys if e.name == "ops")
    assert (ops.sha256, ops.scopes, ops.rate_per_s) == (hash_key(key), ("admin",), 5)
    with pytest.raises(ConfigError, match="already has a key named 'ops'"):
        add_key(file, "ops", "predict")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"keys": []}', "keys: List should have at least 1 item"),
        (
            '{"keys": [{"name": "a", "sha256": "abc", "scopes": ["predict"]}]}',
            "keys.0.sha256: String should match",
        ),
        (
            '{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["root"]}]}',
            "keys.0.scopes.0: Input",
        ),
        (
            '{"keys": [{"name": "a", "key": "raw", "sha256": "'
            + "0" * 64
            + '", "scopes": ["admin"]}]}',
            "keys.0.key",
        ),
        ('{"version": 2, "keys": []}', "version: Input should be 1"),
    ],
)
def test_a_malformed_keys_file_is_a_one_line_error_naming_it(
    tmp_path: Path, text: str, message: str
) -> None:
    # Prepare
    file = tmp_path / "api-keys.json"
    file.write_text(text)
    # Execute
    with pytest.raises(ConfigError) as info:
        load_authenticator("keys", file, env={})
    # Assert
    assert str(info.value).startswith(f"API keys file {file}")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_keys_file_names_it_and_the_command_that_creates_it(tmp_path: Path) -> None:
    message = r"API keys file .*nowhere.json does not exist \(create one with `copur keys init"
    with pytest.raises(ConfigError, match=message):
        load_authenticator("keys", tmp_path / "nowhere.json", env={})


def test_the_keys_document_may_come_from_the_environment(tmp_path: Path) -> None:
    # Prepare: a file that does not exist, and the document in $COPUR_API_KEYS
    document = KeysFile(keys=[KeyEntry(name="env", sha256=hash_key("k-env"), scopes=("predict",))])
    env = {"COPUR_API_KEYS": document.model_dump_json()}
    # Execute
    auth = load_authenticator("keys", tmp_path / "absent.json", env=env)
    # Assert
    assert auth is not None and auth.authorize("Bearer k-env", "predict").name == "env"
    assert load_authenticator("none", tmp_path / "absent.json", env=env) is None


# --- verification
# ----------------------------------------------------------------------------------------


def _auth(
    *entries: tuple[str, str, tuple[str, ...], float | None], clock: list[float] | None = None
) -> Authenticator:
    keys = KeysFile(
        keys=[
            KeyEntry(name=n, sha256=hash_key(k), scopes=s, rate_per_s=r) for n, k, s, r in entries
        ]  # type: ignore[arg-type]
    )
    return Authenticator(keys, clock=(lambda: clock[0]) if clock is not None else None)


STANDARD = (("p", "key-p", ("predict",), None), ("a", "key-a", ("admin",), None))


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing API key"),
        ("", "missing API key"),
        ("Bearer", "must be 'Bearer <key>'"),
        ("Basic key-p", "must be 'Bearer <key>'"),
        ("Bearer key-x", "invalid API key"),
        ("Bearer " + "k" * 600, "invalid API key"),
    ],
)
def test_no_wrong_or_malformed_key_is_unauthenticated(header: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message) as info:
        _auth(*STANDARD).authorize(header, "predict")
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}


def test_scopes_admin_implies_predict_and_predict_is_not_admin() -> None:
    # Prepare
    auth = _auth(*STANDARD)
    # Execute
    admin_predicts = auth.authorize("Bearer key-a", "predict")
    admin_admins = auth.authorize("bearer key-a", "admin")  # the scheme is case-insensitive
    predict_predicts = auth.authorize("Bearer key-p", "predict")
    # Assert
    assert (admin_predicts.name, admin_admins.name, predict_predicts.name) == ("a", "a", "p")
    with pytest.raises(PermissionDenied, match="API key 'p' lacks the 'admin' scope"):
        auth.authorize("Bearer key-p", "admin")


def test_verification_compares_every_entry_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: three entries, the match first
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("copur.transport.auth.guard.hmac.compare_digest", spy)
    auth = _auth(
        ("first", "k1", ("predict",), None), ("second", "k2", ("predict",), None), *STANDARD
    )
    # Execute
    found = auth.authorize("Bearer k1", "predict")
    # Assert: no early exit on the match, and the raw key is never what is compared
    assert found.name == "first"
    assert len(calls) == 4
    assert all(b == hash_key("k1") for _, b in calls)
    assert [a for a, _ in calls] == [e.sha256 for e in auth.entries]


def test_parse_bearer_trims_and_returns_the_key() -> None:
    assert parse_bearer("  Bearer   abc  ") == "abc"


# --- rate limits
# -----------------------------------------------------------------------------------------


def test_a_key_over_its_rate_is_refused_with_the_wait_then_recovers() -> None:
    # Prepare: 2 per second, burst 4, a clock we move by hand
    clock = [100.0]
    auth = _auth(("slow", "k-slow", ("predict",), 2.0), *STANDARD, clock=clock)
    # Execute
    allowed = [auth.authorize("Bearer k-slow", "predict").name for _ in range(4)]
    with pytest.raises(RateLimited) as refused:
        auth.authorize("Bearer k-slow", "predict")
    unlimited = [auth.authorize("Bearer key-p", "predict") for _ in range(50)]
    clock[0] += 0.5
    recovered = auth.authorize("Bearer k-slow", "predict")
    # Assert
    assert allowed == ["slow"] * 4 and len(unlimited) == 50
    assert refused.value.retry_after_s == pytest.approx(0.5)
    assert refused.value.headers == {"Retry-After": "1"}
    assert recovered.name == "slow"


def test_refused_requests_spend_no_tokens() -> None:
    # Prepare
    clock = [0.0]
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=lambda: clock[0])
    # Execute
    first, second, third = bucket.take(), bucket.take(), bucket.take()
    clock[0] += 1.0
    fourth = bucket.take()
    # Assert
    assert (
        first == 0.0
        and second == pytest.approx(1.0)
        and third == pytest.approx(1.0)
        and fourth == 0.0
    )


# --- topology
# ---------------------------------------------------------------------------------------------


def _topology(tmp_path: Path, **extra: object) -> Path:
    import yaml

    config = tmp_path / "cluster.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bundle": "b",
                "parties": [{"index": 0, "port": 5001}],
                "tls": {"mode": "mtls"},
                **extra,
            }
        )
    )
    return config


def test_the_auth_section_defaults_to_keys_and_takes_environment_overrides(tmp_path: Path) -> None:
    # Prepare
    config = _topology(tmp_path)
    # Execute
    default = load_topology(config, env={})
    overridden = load_topology(
        config, env={"COPUR_AUTH_MODE": "none", "COPUR_API_KEYS_FILE": "/etc/k.json"}
    )
    # Assert
    assert (default.auth.mode, default.auth.keys_file) == ("keys", "runs/certs/api-keys.json")
    assert (overridden.auth.mode, overridden.auth.keys_file) == ("none", "/etc/k.json")
    assert default.fusion.max_body_bytes == 1024 * 1024


def test_auth_mode_none_is_refused_off_loopback(tmp_path: Path) -> None:
    # Prepare
    config = _topology(tmp_path, auth={"mode": "none"}, bind_host="0.0.0.0")
    # Execute
    with pytest.raises(ConfigError) as info:
        load_topology(config, env={})
    # Assert
    assert "auth.mode none with bind_host 0.0.0.0" in str(info.value) and "\n" not in str(
        info.value
    )
    assert load_topology(_topology(tmp_path, auth={"mode": "none"}), env={}).auth.mode == "none"


# --- the command line
# -------------------------------------------------------------------------------------


def test_cli_keys_init_and_add(tmp_path: Path) -> None:
    # Prepare
    runner = CliRunner()
    # Execute
    init = runner.invoke(app, ["keys", "init", str(tmp_path)])
    again = runner.invoke(app, ["keys", "init", str(tmp_path)])
    added = runner.invoke(
        app, ["keys", "add", str(tmp_path / "api-keys.json"), "ci", "--scope", "predict"]
    )
    # Assert
    assert init.exit_code == 0, init.output
    assert again.exit_code == 2 and "already exists" in again.output
    assert added.exit_code == 0, added.output
    key = added.stdout.strip().splitlines()[-1]
    auth = load_authenticator("keys", tmp_path / "api-keys.json", env={})
    assert auth is not None and auth.authorize(f"Bearer {key}", "predict").name == "ci"
    assert key not in (tmp_path / "api-keys.json").read_text()
