"""What every command of the CLI shares: domain errors as one line and exit status 2, and the
command line as a user would type it again (recorded in reports)."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import typer

from copur.errors import CopurError

__all__ = ["command_line", "guard", "spelled_out"]

T = TypeVar("T")


def guard(fn: Callable[[], T]) -> T:
    """Run ``fn``; a domain error becomes one line on stderr and exit status 2."""
    try:
        return fn()
    except CopurError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


def command_line(argv: Sequence[str], command: str) -> str:
    """``argv`` as a command a user can paste again: ``copur`` followed by everything from the first
    ``command`` token on (``argv[1:]`` when ``command`` is absent), shell-quoted."""
    args = list(argv)
    rest = args[args.index(command) :] if command in args else args[1:]
    return shlex.join(["copur", *rest])


def spelled_out(words: Sequence[str], options: Mapping[str, object]) -> str:
    """``copur WORDS --option value ...`` with every setting spelled out, shell-quoted: what a
    report records so that the run is reproduced even when a default changes. Option names are
    the keys with ``_`` as ``-``; True is a bare flag, None and False are left out, a list or
    tuple is comma-joined."""
    argv = ["copur", *words]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, list | tuple):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return shlex.join(argv)
