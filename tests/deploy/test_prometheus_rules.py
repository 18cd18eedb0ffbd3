"""deploy/prometheus: the recording rules and alerts over the fusion center's series, their
promtool unit tests (deploy/prometheus/tests.yml) and the example scrape configurations, checked
with the real ``promtool`` (Debian's ``prometheus`` package; ``make test-packages``, no skip).

The unit tests are shown to bite: a copy of the rules with a threshold or a ``for`` loosened makes
them fail, so their "does not fire" cases are real."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from promkit import (
    BUILTIN_SERIES,
    PROMETHEUS_DIR,
    RULE_TESTS,
    RULES_FILE,
    alert_rules,
    exported_series,
    metric_names,
    promtool,
    recorded_names,
    rule_exprs,
)

CONFIGS = ("prometheus.yml", "prometheus-k8s.yml")
FUSION_JOB = "copur-fusion"  # the job CopurFusionDown watches
PER_PARTY_ALERTS = {
    "CopurPartyFlagRateHigh",
    "CopurPartyMissingRateHigh",
    "CopurPartyDown",
    "CopurPartyEjected",
    "CopurPartyBundleMismatch",
    "CopurTooFewParties",
}
OTHER_ALERTS = {"CopurErrorRateHigh", "CopurFusionDown"}
HONEST_FLAG_RATE_MAX = 0.02  # measured on held-out samples, see the comment atop rules.yml


def _tests() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    return cases


def _mutated_run(tmp_path: Path, old: str, new: str) -> str:
    """``promtool test rules`` on tests.yml against a copy of rules.yml with ``old`` -> ``new``
    (exactly once); its output."""
    rules = RULES_FILE.read_text()
    assert rules.count(old) == 1, f"{old!r} is not in rules.yml exactly once"
    (tmp_path / "rules.yml").write_text(rules.replace(old, new))
    shutil.copy(RULE_TESTS, tmp_path / "tests.yml")
    run = promtool("test", "rules", "tests.yml", cwd=tmp_path)
    assert run.returncode != 0, f"the unit tests pass with {new!r}:\n{run.stdout}"
    return run.stdout + run.stderr


# --- promtool
# ------------------------------------------------------------------------------------------


def test_promtool_checks_the_shipped_rules() -> None:
    # Execute
    run = promtool("check", "rules", str(RULES_FILE))

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in run.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    # Execute
    run = promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS_DIR)

    # Assert
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        # an honest party at 1 % (and a noisy one at 6 %) would fire
        (
            "job_party:copur_party_flags:ratio_rate2m > 0.10",
            "job_party:copur_party_flags:ratio_rate2m > 0.005",
            "CopurPartyFlagRateHigh",
        ),
        # without the traffic floor, one flagged sample in 20 s would fire
        (
            "job:copur_batch_samples:rate2m >= 1",
            "job:copur_batch_samples:rate2m >= 0",
            "CopurPartyFlagRateHigh",
        ),
        # a party down for 45 s would fire
        (
            "copur_party_up == 0\n        for: 2m",
            "copur_party_up == 0\n        for: 30s",
            "CopurPartyDown",
        ),
        # a party ejected for 30 to 45 s (re-admitted by a probe) would fire
        (
            "copur_party_ejected == 1\n        for: 1m",
            "copur_party_ejected == 1\n        for: 15s",
            "CopurPartyEjected",
        ),
        # one batch answered from another bundle would fire
        (
            '{reason="version"} > 0\n        for: 2m',
            '{reason="version"} > 0\n        for: 1m',
            "CopurPartyBundleMismatch",
        ),
        # a party timing out (another reason) would fire
        (
            '{reason="version"} > 0',
            '{reason=~".+"} > 0',
            "CopurPartyBundleMismatch",
        ),
        # a job with 0.02 requests/s, every one failing, would fire
        (
            "job:copur_requests:rate2m >= 0.1",
            "job:copur_requests:rate2m >= 0",
            "CopurErrorRateHigh",
        ),
        # the parties still up would be named too
        (
            "copur_party_up == 0\n            and on (job, instance)",
            "copur_party_up >= 0\n            and on (job, instance)",
            "CopurTooFewParties",
        ),
    ],
    ids=[
        "flag threshold",
        "traffic floor",
        "down for",
        "ejected for",
        "mismatch for",
        "mismatch reason",
        "error traffic floor",
        "up parties",
    ],
)
def test_the_unit_tests_fail_when_an_alert_is_loosened(
    tmp_path: Path, old: str, new: str, named: str
) -> None:
    # Execute
    output = _mutated_run(tmp_path, old, new)

    # Assert
    assert named in output, output


@pytest.mark.parametrize("config", CONFIGS)
def test_promtool_checks_the_example_scrape_configs(config: str) -> None:
    # Prepare
    path = PROMETHEUS_DIR / config
    parsed = yaml.safe_load(path.read_text())

    # Execute
    run = promtool("check", "config", str(path))

    # Assert: valid, loading the shipped rules, scraping the fusion over HTTPS with the cluster CA
    assert run.returncode == 0, run.stdout + run.stderr
    assert [(path.parent / f).resolve() for f in parsed["rule_files"]] == [RULES_FILE]
    (fusion,) = [job for job in parsed["scrape_configs"] if job["job_name"] == FUSION_JOB]
    assert fusion["scheme"] == "https"
    assert fusion["tls_config"]["ca_file"] == "/certs/ca.pem"
    assert fusion["tls_config"]["server_name"] == "fusion"  # a name the fusion certificate holds


# --- what the rules say
# --------------------------------------------------------------------------------


def test_every_rule_reads_exported_series_or_recorded_rules_only() -> None:
    # Prepare
    known = exported_series() | recorded_names() | BUILTIN_SERIES

    # Execute
    unknown = {
        name: sorted(metric_names(expr) - known)
        for name, expr in rule_exprs().items()
        if metric_names(expr) - known
    }

    # Assert
    assert "copur_party_missing_samples_total" in exported_series()
    assert unknown == {}


def test_the_alerts_are_the_expected_ones_with_severity_and_annotations() -> None:
    # Execute
    alerts = alert_rules()

    # Assert: per-party alerts name the party in both annotations
    assert set(alerts) == PER_PARTY_ALERTS | OTHER_ALERTS
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        assert re.fullmatch(r"\d+[sm]", rule["for"]), name
        if name in PER_PARTY_ALERTS:
            for key in ("summary", "description"):
                assert "{{ $labels.party }}" in rule["annotations"][key], (name, key)


def test_the_flag_rate_threshold_is_well_above_the_honest_rate_and_fires_within_minutes() -> None:
    # Prepare
    rule = alert_rules()["CopurPartyFlagRateHigh"]

    # Execute
    threshold = float(re.search(r"ratio_rate2m > ([0-9.]+)", rule["expr"]).group(1))  # type: ignore[union-attr]

    # Assert: at least 3x the worst honest rate measured, far under a lie (flip: >= 90 %)
    assert 3 * HONEST_FLAG_RATE_MAX <= threshold <= 0.5
    assert rule["for"] in {"30s", "1m", "2m"}
    assert "measured" in RULES_FILE.read_text()


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    # Prepare
    cases = [case for test in _tests() for case in test.get("alert_rule_test", [])]
    series = [s["series"] for test in _tests() for s in test["input_series"]]

    # Execute
    firing = {c["alertname"] for c in cases if c.get("exp_alerts")}
    quiet = {c["alertname"] for c in cases if not c.get("exp_alerts")}
    names = {re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", s).group(0) for s in series}  # type: ignore[union-attr]

    # Assert: every alert seen firing and seen not firing; inputs are real series names
    assert firing == set(alert_rules())
    assert quiet == set(alert_rules())
    assert names <= exported_series() | BUILTIN_SERIES, names - exported_series()
