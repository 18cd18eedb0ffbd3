"""What every command of the CLI shares: domain errors as one line and exit status 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer

from copur.errors import CopurError

__all__ = ["guard"]

T = TypeVar("T")


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a domain error becomes one line on stderr and exit status 2."""
    try:
        return fn()
    except CopurError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
