"""Helpers of the monitoring tests: the shipped Prometheus and Grafana files, the real ``promtool``
binary (Debian's ``prometheus`` package: ``make test-packages``), the series the fusion center
exports (from a real FusionMetrics registry) and the metric names a PromQL expression reads."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from copur.roles.fusion.metrics import FusionMetrics

__all__ = [
    "BUILTIN_SERIES",
    "DASHBOARD",
    "GRAFANA_DIR",
    "PROMETHEUS_DIR",
    "REPO",
    "RULES_FILE",
    "RULE_TESTS",
    "alert_rules",
    "dashboard_exprs",
    "exported_series",
    "metric_names",
    "promtool",
    "recorded_names",
    "rule_exprs",
    "write_recording_rules",
]

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests.yml"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "copur.json"
# Series Prometheus itself writes: the scrape health of every target, the alerts' state.
BUILTIN_SERIES = frozenset({"up", "ALERTS"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "group_left", "group_right"}
)


def promtool(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real ``promtool`` (an AssertionError saying how to install it when it is missing)."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is not on PATH: `make test-packages` installs it"
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False
    )


def _groups(path: Path = RULES_FILE) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text())["groups"]
    return groups


def rule_exprs(path: Path = RULES_FILE) -> dict[str, str]:
    """Every rule's name (``record`` or ``alert``) -> its expression."""
    return {
        rule.get("record") or rule["alert"]: rule["expr"]
        for group in _groups(path)
        for rule in group["rules"]
    }


def recorded_names(path: Path = RULES_FILE) -> set[str]:
    """The series the recording rules write."""
    return {
        rule["record"] for group in _groups(path) for rule in group["rules"] if "record" in rule
    }


def alert_rules(path: Path = RULES_FILE) -> dict[str, dict[str, Any]]:
    """Alert name -> its rule."""
    return {r["alert"]: r for group in _groups(path) for r in group["rules"] if "alert" in r}


def exported_series() -> set[str]:
    """Every series name a fresh FusionMetrics registry exposes, suffixes included (a counter
    ``x`` is ``x_total`` and ``x_created``; a histogram ``x_bucket``, ``x_sum``, ``x_count``);
    labelled families are listed whether or not a child exists yet."""
    names: set[str] = set()
    for family in FusionMetrics().registry.collect():
        names |= {family.name + suffix for suffix in _SUFFIXES[family.type]}
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords, label names (matchers, ``by``/``on``/... lists), durations or
    numbers. Syntax is promtool's job; this only reads the names of a valid expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges, subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"(?<![\w:.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?", " ", text)  # numbers
    found = re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?", text)
    return {m.group(0) for m in found if m.group(1) is None and m.group(0) not in _KEYWORDS}


def dashboard_exprs(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every panel, rows' nested panels included."""
    dashboard = json.loads(path.read_text())
    panels = [
        p for top in dashboard["panels"] for p in [top, *top.get("panels", [])]
    ]  # a collapsed row keeps its panels inside it
    return [(p["title"], t["expr"]) for p in panels for t in p.get("targets", [])]


def write_recording_rules(exprs: list[str], path: Path) -> Path:
    """A throwaway rules file with every expression as a recording rule (``promtool check rules``
    parses each)."""
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    return path
