"""The one Jinja2 set-up every report uses: Markdown and HTML templates in a ``templates/`` folder
beside the code that renders them, HTML autoescaped (``*.html.j2``), Markdown as it is, an undefined
name an error, block tags leaving no blank lines, and the ``fmt`` filter (Python's :func:`format`:
``{{ x|fmt(".3f") }}``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

__all__ = ["templates"]


def templates(package: str, **filters: Callable[..., Any]) -> Environment:
    """The templates of ``package`` (its ``templates/`` folder) with the shared settings, the
    ``fmt`` filter and ``filters`` added."""
    env = Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = format
    env.filters.update(filters)
    return env
