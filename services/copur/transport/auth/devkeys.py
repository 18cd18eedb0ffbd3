"""Creating keys: ``copur keys init`` (a keys file plus development keys beside it) and ``copur
keys add``; and where the development keys of a keys file are, for the commands that start a
cluster and call it.

Layout of ``copur keys init DIR``::

    DIR/api-keys.json        hashes, names, scopes (mode 0644)
    DIR/keys/predict.key     a raw key with scope predict (mode 0600)
    DIR/keys/admin.key       a raw key with scope admin (mode 0600)"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from copur.errors import ConfigError
from copur.transport.auth.keys import (
    SCOPES,
    KeyEntry,
    Scope,
    hash_key,
    load_keys_file,
    new_key,
    write_keys_file,
)

__all__ = ["KEYS_FILE_NAME", "InitResult", "add_key", "dev_key", "dev_key_path", "init_keys"]

KEYS_FILE_NAME = "api-keys.json"
DEV_KEYS_DIR = "keys"


@dataclass(frozen=True)
class InitResult:
    """What ``init_keys`` wrote: the keys file and one raw key file per scope."""

    keys_file: Path
    key_files: dict[Scope, Path]


def dev_key_path(keys_file: str | Path, scope: Scope) -> Path:
    """``<dir of keys_file>/keys/<scope>.key``: where ``copur keys init`` puts the development
    key."""
    return Path(keys_file).parent / DEV_KEYS_DIR / f"{scope}.key"


def dev_key(keys_file: str | Path, scope: Scope) -> str | None:
    """The development key of ``scope`` beside ``keys_file``, or None when there is none (or it
    is empty)."""
    path = dev_key_path(keys_file, scope)
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return key or None


def _write_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 before anything is written into it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text + "\n")


def init_keys(directory: str | Path, *, force: bool = False) -> InitResult:
    """Write ``directory``/api-keys.json with one fresh key per scope and those keys to
    ``keys/*.key``. Refuses (ConfigError naming the file) to overwrite any of them unless
    ``force``."""
    root = Path(directory)
    keys_file = root / KEYS_FILE_NAME
    key_files = {scope: dev_key_path(keys_file, scope) for scope in SCOPES}
    existing = [p for p in (keys_file, *key_files.values()) if p.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} already exists (use --force to replace the keys)")
    raw = {scope: new_key() for scope in SCOPES}
    entries = [
        KeyEntry(name=scope, sha256=hash_key(raw[scope]), scopes=(scope,)) for scope in SCOPES
    ]
    for scope, path in key_files.items():
        _write_secret(path, raw[scope])
    write_keys_file(keys_file, entries)
    return InitResult(keys_file=keys_file, key_files=key_files)


def add_key(keys_file: str | Path, name: str, scope: Scope, rate_per_s: float | None = None) -> str:
    """Append a fresh key named ``name`` to ``keys_file`` (created when missing) and return the
    raw key, which is stored nowhere: the caller shows it once. ConfigError when the name is
    taken."""
    file = Path(keys_file)
    entries = list(load_keys_file(file).keys) if file.exists() else []
    if any(e.name == name for e in entries):
        raise ConfigError(f"API keys file {file} already has a key named '{name}'")
    key = new_key()
    try:
        entry = KeyEntry(name=name, sha256=hash_key(key), scopes=(scope,), rate_per_s=rate_per_s)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"key '{name}': {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    write_keys_file(file, [*entries, entry])
    return key
