"""The scenario report's ``index.html`` in a real headless Chromium (tests/browser.py): a report
written by :func:`write_report` from the golden report (real matplotlib plots) loads, from disk and
over HTTP, with no console error, no uncaught exception, no error in the log and no failed request,
and every plot the report has is decoded at its size. Two broken copies (a plot whose file is not
there, a plot whose data is cut short) and one with a failing script show that the same checks
fail when a plot does not load or the page errs."""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from browser import chromium, load_page, serve_directory
from copur.evaluation.scenarios.model import ScenarioReport
from copur.evaluation.scenarios.report import plots, write_report


@pytest.fixture(autouse=True, scope="module")
def _chromium_installed() -> None:
    """No browser is a failure, not a skip: `make test` installs it (`make test-packages`)."""
    assert chromium() is not None, "no chromium on PATH: run `make test-packages`"


GOLDEN = Path(__file__).parent / "golden" / "scenario"
_PLOT = re.compile(r'<img alt="([^"]*)" src="(data:image/png;base64,([^"]*))">')


@dataclass(frozen=True)
class Written:
    """A report as :func:`write_report` wrote it: its folder, its page's text, and per plot (in
    page order) the title, the ``src`` and the PNG's width and height read from its header."""

    out: Path
    page: str
    plots: list[tuple[str, str, int, int]]


def _size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (right after the 8-byte signature)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    """The golden report (every step kind, two predict steps) written with its real plots."""
    report = ScenarioReport.from_json(json.loads((GOLDEN / "report.json").read_text()))
    out = tmp_path_factory.mktemp("report") / "out"
    write_report(report, out)
    page = (out / "index.html").read_text()
    found = [
        (html.unescape(alt), src, *_size(base64.b64decode(data)))
        for alt, src, data in _PLOT.findall(page)
    ]
    # The page shows every plot the report makes, each once: what the browser must load.
    assert [title for title, *_ in found] == list(plots(report)) and len(found) == 3
    return Written(out=out, page=page, plots=found)


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_the_report_loads_in_a_real_browser_with_every_plot_and_no_error(
    written: Written, scheme: str
) -> None:
    # Prepare
    expected = [(title, width, height) for title, _, width, height in written.plots]

    # Execute
    if scheme == "file":
        seen = load_page(written.out / "index.html")
    else:
        with serve_directory(written.out) as base:
            seen = load_page(f"{base}index.html")

    # Assert
    assert seen.console_errors == []
    assert seen.exceptions == []
    assert seen.log_errors == []  # over HTTP: no request for a /favicon.ico that is not there
    assert seen.failed_loads == []
    assert [(i.alt, i.width, i.height) for i in seen.images] == expected
    assert all(i.loaded for i in seen.images) and seen.problems == []
    assert (seen.objects, seen.svgs) == (0, 0)  # the plots are <img> only: all of them checked


@pytest.mark.parametrize("broken", ["plot-file-missing", "plot-data-cut-short"])
def test_a_copy_with_a_plot_that_does_not_load_fails_the_same_checks(
    written: Written, broken: str, tmp_path: Path
) -> None:
    # Prepare: a copy of the report whose first plot is gone. The report inlines its plots, so
    # "gone" is either the plot moved out to a file that is then deleted, or its data cut to the
    # PNG's first bytes.
    title, src, *_ = written.plots[0]
    copy = tmp_path / "copy"
    shutil.copytree(written.out, copy)
    if broken == "plot-file-missing":
        (copy / "plot-0.png").write_bytes(base64.b64decode(src.split(",", 1)[1]))
        (copy / "index.html").write_text(written.page.replace(src, "plot-0.png", 1))
        (copy / "plot-0.png").unlink()
    else:
        (copy / "index.html").write_text(written.page.replace(src, src[:100], 1))

    # Execute
    seen = load_page(copy / "index.html")

    # Assert: that one plot is reported unloaded (and a missing file as a failed load), the
    # others load.
    assert [i.alt for i in seen.images if not i.loaded] == [title]
    assert sum(i.loaded for i in seen.images) == len(written.plots) - 1
    if broken == "plot-file-missing":
        assert seen.failed_loads == [f"{(copy / 'plot-0.png').as_uri()}: net::ERR_FILE_NOT_FOUND"]
        assert any("ERR_FILE_NOT_FOUND" in e for e in seen.log_errors)
    else:
        assert seen.failed_loads == []
    assert seen.problems != []
    assert seen.exceptions == []


def test_a_copy_with_a_console_error_and_an_uncaught_exception_fails_the_same_checks(
    written: Written, tmp_path: Path
) -> None:
    # Prepare: the report's page with a script that logs an error and then throws.
    script = '<script>console.error("report broke"); no_such_function();</script>'
    copy = tmp_path / "index.html"
    copy.write_text(written.page.replace("</body>", f"{script}</body>", 1))

    # Execute
    seen = load_page(copy)

    # Assert: both are reported; the plots still load.
    assert seen.console_errors == ["error: report broke"]
    assert len(seen.exceptions) == 1 and "no_such_function is not defined" in seen.exceptions[0]
    assert all(i.loaded for i in seen.images) and len(seen.images) == len(written.plots)
