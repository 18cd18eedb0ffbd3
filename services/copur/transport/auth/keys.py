"""The API keys file: for each key its name, the SHA-256 hex of the key (never the key itself),
its scopes and an optional request rate. JSON, e.g.::

    {"version": 1, "keys": [{"name": "predict", "sha256": "9f86...", "scopes": ["predict"],
    "rate_per_s": 50}]}

Scopes: ``predict`` (``POST /v1/predict``, gRPC ``Predict``) and ``admin`` (everything,
``predict`` included)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from copur.errors import ConfigError

__all__ = [
    "FILE_VERSION",
    "SCOPES",
    "KeyEntry",
    "KeysFile",
    "Scope",
    "hash_key",
    "load_keys_file",
    "new_key",
    "parse_keys",
    "write_keys_file",
]

FILE_VERSION = 1
Scope = Literal["predict", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "admin")


class KeyEntry(BaseModel):
    """One key: ``sha256`` is the lowercase hex digest of the key's UTF-8 bytes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[Scope, ...] = Field(min_length=1)
    rate_per_s: float | None = Field(default=None, gt=0)

    def allows(self, scope: Scope) -> bool:
        """True when this key may do what ``scope`` guards (``admin`` implies every scope)."""
        return scope in self.scopes or "admin" in self.scopes


class KeysFile(BaseModel):
    """A keys document (version 1): at least one entry, names and hashes unique."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    keys: list[KeyEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> KeysFile:
        names = [k.name for k in self.keys]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"key name '{dup[0]}' is used twice")
        hashes = [k.sha256 for k in self.keys]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two entries hold the same key hash")
        return self


def hash_key(key: str) -> str:
    """The SHA-256 hex digest of ``key`` (what the keys file stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random key: 32 bytes from :mod:`secrets`, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def parse_keys(text: str, source: str) -> KeysFile:
    """Parse and validate a keys document; ConfigError (one line naming ``source``) when
    malformed."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"API keys {source} is not valid JSON: {exc}") from None
    try:
        return KeysFile.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "document"
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"API keys {source}: {where}: {msg}") from None


def load_keys_file(path: str | Path) -> KeysFile:
    """Read and validate the keys file at ``path``; ConfigError (one line naming it) when missing
    or bad."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"API keys file {file} does not exist (create one with `copur keys init DIR`)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"API keys file {file} cannot be read: {exc}") from None
    return parse_keys(text, f"file {file}")


def write_keys_file(path: str | Path, entries: Sequence[KeyEntry]) -> None:
    """Write ``entries`` to ``path`` atomically (a temporary file renamed over it), mode 0644:
    the file holds hashes only, and the serving processes (another uid in a container) must
    read it."""
    file = Path(path)
    document = KeysFile(keys=list(entries))
    text = json.dumps(document.model_dump(mode="json"), indent=2) + "\n"
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, file)
