"""docs/PERFORMANCE.md from the JSON written by ``copur bench purifier`` and ``copur bench
serve``.

:func:`render_performance` is pure (the files' contents in, markdown out): it derives the numbers
(:mod:`~copur.evaluation.bench.targets`) and renders ``templates/performance.md.j2``, which holds
the text. :func:`~copur.evaluation.bench.models.load_bench` reads and checks an input file,
:func:`write_performance` writes the markdown."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from copur.evaluation.bench.models import (
    Machine,
    OneSampleLoop,
    PurifierBench,
    PurifierRecord,
    ServeBench,
    ServeSettings,
    as_bench,
)
from copur.evaluation.bench.targets import (
    Target,
    best_batched_ref,
    evaluate_targets,
    format_number,
    speedup,
    speedup_ceiling,
)
from copur.evaluation.templating import templates

__all__ = [
    "Target",
    "evaluate_targets",
    "format_number",
    "render_performance",
    "write_performance",
]

TEMPLATE = "performance.md.j2"
LOOP_KEYS = ("one_sample_loop", "one_sample_loop_autograd")


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates of this package; markdown, so nothing is escaped."""
    return templates("copur.evaluation.bench", num=format_number)


def _shapes(purifier: PurifierBench) -> dict[str, list[PurifierRecord]]:
    """The records of each shape (shapes in the file's order): copur-ref first, then by batch."""
    shapes: dict[str, list[PurifierRecord]] = {}
    for record in purifier.records:
        shapes.setdefault(record.shape, []).append(record)
    return {
        shape: sorted(records, key=lambda r: (r.purifier != "copur-ref", r.batch_size))
        for shape, records in shapes.items()
    }


def _loops(purifier: PurifierBench) -> list[tuple[str, OneSampleLoop, float | None]]:
    """(key, loop, batched speedup over it) of each one-sample loop in the file."""
    loops = ((key, getattr(purifier, key)) for key in LOOP_KEYS)
    return [(key, loop, speedup(purifier, key)) for key, loop in loops if loop is not None]


def _context(purifier: PurifierBench | None, serve: ServeBench | None) -> dict[str, Any]:
    """What the template needs beyond the files: the numbers derived from them."""
    targets = evaluate_targets(purifier, serve)
    context: dict[str, Any] = {
        "purifier": purifier,
        "serve": serve,
        "bench_machine": (purifier.machine if purifier else None) or Machine(),
        "serve_machine": (serve.machine if serve else None) or Machine(),
        "targets": targets,
        "met": sum(t.met is True for t in targets),
        "ceiling": speedup_ceiling(purifier),
    }
    if purifier is not None:
        context |= {
            "shapes": _shapes(purifier),
            "best": best_batched_ref(purifier),
            "loops": _loops(purifier),
        }
    if serve is not None:
        rss = serve.rss_by_mode()
        context |= {
            "settings": serve.settings or ServeSettings(),
            "rss": rss,
            "processes": sorted({name for peaks in rss.values() for name in peaks}),
        }
    return context


def render_performance(
    purifier: PurifierBench | Mapping[str, Any] | None,
    serve: ServeBench | Mapping[str, Any] | None,
    *,
    commands: dict[str, str],
    generated: str | None = None,
) -> str:
    """The markdown of docs/PERFORMANCE.md from the purifier and serve benchmarks (their models, or
    the JSON objects, checked as the files are). ``commands`` maps "purifier", "serve" and "report"
    (other keys are shown as they are) to the command lines that made the inputs and this file, in
    the order to run them; ``generated`` is an optional date line. ``None`` for an input leaves its
    sections out."""
    bench = None if purifier is None else as_bench(PurifierBench, purifier, "purifier")
    served = None if serve is None else as_bench(ServeBench, serve, "serve")
    context = _context(bench, served) | {"commands": commands, "generated": generated}
    return _environment().get_template(TEMPLATE).render(context)


def write_performance(markdown: str, path: str | Path) -> Path:
    """Write the markdown (parent folders created); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown)
    return out
