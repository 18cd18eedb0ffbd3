"""The scenario report: the typed model reads report.json back unchanged, the Markdown and HTML
pages render what they rendered before they moved into Jinja2 templates (goldens written by the
pre-template code from a report with every step kind and text that needs escaping), and a predict
step's metrics."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from copur.evaluation.scenarios.metrics import predict_metrics
from copur.evaluation.scenarios.model import (
    ExpectRecord,
    PredictRecord,
    ScenarioReport,
    SlowPartyRecord,
)
from copur.evaluation.scenarios.report import render_html, render_markdown, write_report

GOLDEN = Path(__file__).parent / "golden" / "scenario"
#: the plots the golden page was rendered with (real ones are PNGs from matplotlib)
IMAGES = {"Accuracy <per> step & 'defense'": "iVBORw0KGgo+/=", "Latency": "AAAA"}


def _raw() -> str:
    return (GOLDEN / "report.json").read_text()


def test_the_model_reads_report_json_back_unchanged() -> None:
    report = ScenarioReport.from_json(json.loads(_raw()))

    assert json.dumps(report.to_json(), indent=2) + "\n" == _raw()
    assert [type(s).__name__ for s in report.steps][3:5] == ["PredictRecord", "ExpectRecord"]
    assert [p.name for p in report.predicts] == ["flip-p0 <&>", "after"]
    assert [e.index for e in report.failed] == [5, 11] and not report.passed
    # A slow_party step's seconds are the pause asked for (as the runner has always written them).
    slow = report.steps[8]
    assert isinstance(slow, SlowPartyRecord) and slow.seconds == 30.0


def test_the_markdown_matches_the_golden() -> None:
    report = ScenarioReport.from_json(json.loads(_raw()))

    assert render_markdown(report) == (GOLDEN / "report.md").read_text()


def test_the_html_matches_the_golden_but_for_equivalent_entities() -> None:
    report = ScenarioReport.from_json(json.loads(_raw()))

    page = render_html(report, IMAGES)

    # The template's autoescape writes " and ' as &#34; and &#39; where html.escape wrote &quot; and
    # &#x27;: the same characters on screen; nothing else differs. (One line was added to the golden
    # since, on purpose: the empty inline favicon, so that a browser asks the server for none.)
    before = (GOLDEN / "index.html").read_text()
    assert page == before.replace("&quot;", "&#34;").replace("&#x27;", "&#39;")
    description = "Every step kind once: a &#34;flip&#34;, a &lt;targeted&gt; pgd &amp; faults."
    assert f"<p>  {description}\n</p>" in page


def test_write_report_writes_the_three_files(tmp_path: Path) -> None:
    report = ScenarioReport.from_json(json.loads(_raw()))

    write_report(report, tmp_path / "out")

    assert (tmp_path / "out" / "report.json").read_text() == _raw()
    assert (tmp_path / "out" / "report.md").read_text() == (GOLDEN / "report.md").read_text()
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 3


def _answer(
    sample_id: int,
    label: int,
    flagged: tuple[int, ...] = (),
    missing: tuple[int, ...] = (),
) -> object:
    """A stand-in for a Prediction: what predict_metrics reads of it."""
    return SimpleNamespace(
        sample_id=sample_id,
        label=label,
        flagged_parties=flagged,
        missing_parties=missing,
    )


def test_predict_metrics_of_one_defense() -> None:
    answers = {
        1: _answer(1, 0, flagged=(2,)),
        2: _answer(2, 3, flagged=(2, 0), missing=(1,)),
        3: _answer(3, 3),
    }
    labels = {1: 0, 2: 1, 3: 3}

    m = predict_metrics(
        answers,
        labels,
        attackers={2},
        target=3,
        num_parties=3,
        latencies_s=[0.1, 0.2, 0.3, 0.4],
        errors=["boom"] * 7,
        error_samples=14,
    )

    assert m.answered == 3 and m.accuracy == pytest.approx(2 / 3)
    # samples 1 and 2 are not of class 3; 2 went to 3
    assert m.attack_success_rate == pytest.approx(1 / 2)
    assert m.flag_precision == pytest.approx(2 / 3) and m.flag_recall == pytest.approx(2 / 3)
    # copur.evaluation.percentiles: linear interpolation, in ms
    assert m.latency_p50_ms == pytest.approx(250.0) and m.latency_p99_ms == pytest.approx(397.0)
    assert m.missing == {"0": 0, "1": 1, "2": 0} and m.requests == 11
    assert m.errors == 7 and m.error_samples == 14 and m.error_messages == ["boom"] * 5
    assert m.metric("errors") == 7 and m.metric("flag_recall") == m.flag_recall


def test_predict_metrics_without_answers_are_undefined() -> None:
    m = predict_metrics(
        {},
        {},
        attackers=set(),
        target=None,
        num_parties=2,
        latencies_s=[],
        errors=[],
        error_samples=0,
    )

    undefined = (m.accuracy, m.flag_precision, m.flag_recall, m.latency_p50_ms, m.latency_p99_ms)
    assert undefined == (None,) * 5
    assert m.answered == 0 and m.requests == 0


def test_records_keep_the_runners_key_order() -> None:
    expect = ExpectRecord(
        index=2, seconds=0.0, step="a", defense="copur", metric="accuracy", op=">=", value=0.9,
        actual=1.0, passed=True, description="a/copur: accuracy >= 0.9",
    )  # fmt: skip
    predict = PredictRecord(
        index=1, seconds=0.5, name="a", attackers=[], target=None, policies={}, defenses={}
    )  # fmt: skip

    assert list(expect.model_dump()) == [
        "index", "kind", "seconds", "step", "defense", "metric", "op", "value", "actual", "passed",
        "description",
    ]  # fmt: skip
    assert list(predict.model_dump()) == [
        "index", "kind", "seconds", "name", "attackers", "target", "policies", "defenses",
    ]  # fmt: skip
