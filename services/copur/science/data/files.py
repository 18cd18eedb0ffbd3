"""Reading user-supplied tables with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from copur.errors import DataError

__all__ = ["read_table", "require_dir", "require_file"]


def require_dir(path: str | Path | None, *, dataset: str) -> Path:
    """``path`` when it is a directory; else a DataError naming it and what it should hold."""
    if path is None:
        raise DataError(f"{dataset} needs --data-dir pointing at its files")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{dataset}: data directory {folder} does not exist")
    return folder


def require_file(path: Path) -> Path:
    """``path`` when it is a file; else a DataError naming it and what it should be."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    return path


def read_table(path: Path, *, sep: str, header: int | None) -> pd.DataFrame:
    """Read a delimited text table; drop the one empty, unnamed last column a trailing separator
    leaves."""
    require_file(path)
    try:
        frame = pd.read_csv(path, sep=sep, header=header)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read {path}: {first}") from None
    last = frame.columns[-1] if frame.shape[1] else None
    unnamed = header is None or str(last).startswith("Unnamed:")
    if last is not None and unnamed and frame[last].isna().all():
        frame = frame.drop(columns=[last])
    return frame
