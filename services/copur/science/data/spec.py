"""What names a data set: the loader, where its files are, how its columns are divided."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["DatasetSpec"]


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """Everything needed to load the same data set again (it is stored in the bundle manifest).

    ``divisions`` holds one column-division string per feature table, e.g. ``("0 360 634", "0 500
    1000")`` for NUS-WIDE's image and tag tables; empty means the loader's default."""

    name: str = "mfeat"
    data_dir: str | None = None
    divisions: tuple[str, ...] = ()
    label: str | None = None
    seed: int = 0
    test_fraction: float = 0.2

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the manifest's ``dataset`` section)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetSpec:
        """The inverse of :meth:`to_dict`."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        values["divisions"] = tuple(values.get("divisions", ()))
        return cls(**values)
