"""The one check every front door runs: who presents the key (401), may they do this (403), are
they within their rate (429). Transport-free: HTTP and gRPC adapters hand it the
``Authorization`` value."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from copur.errors import ConfigError
from copur.transport.auth.errors import PermissionDenied, RateLimited, Unauthenticated
from copur.transport.auth.keys import (
    KeyEntry,
    KeysFile,
    Scope,
    hash_key,
    load_keys_file,
    parse_keys,
)
from copur.transport.auth.ratelimit import TokenBucket

__all__ = ["KEYS_ENV", "Authenticator", "Principal", "load_authenticator", "parse_bearer"]

KEYS_ENV = (
    "COPUR_API_KEYS"  # the keys document itself (containers); takes precedence over the keys file
)
BURST_FACTOR = 2.0  # a key's bucket holds twice its per-second rate
MAX_KEY_CHARS = 512  # longer credentials are refused without hashing them


@dataclass(frozen=True)
class Principal:
    """The caller a key identified: the entry's name and scopes."""

    name: str
    scopes: tuple[Scope, ...]


def parse_bearer(authorization: str | None) -> str:
    """The key of an ``Authorization: Bearer <key>`` value (scheme case-insensitive);
    Unauthenticated when the header is missing, of another scheme, empty or absurdly long."""
    if authorization is None or not authorization.strip():
        raise Unauthenticated("missing API key: send the header 'Authorization: Bearer <key>'")
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise Unauthenticated("the Authorization header must be 'Bearer <key>'")
    if len(key) > MAX_KEY_CHARS:
        raise Unauthenticated("invalid API key")
    return key


class Authenticator:
    """Verifies keys against the entries of one keys document.

    Guarantees: the presented key is hashed and its digest compared with **every** entry's digest
    by :func:`hmac.compare_digest` (no early exit, so the time taken does not depend on which
    entry matches or where a mismatch starts); raw keys are never stored; a refused request
    (401/403/429) spends no rate."""

    def __init__(self, keys: KeysFile, *, clock: Callable[[], float] | None = None) -> None:
        self.entries: tuple[KeyEntry, ...] = tuple(keys.keys)
        tick = clock or time.monotonic
        self._buckets: dict[str, TokenBucket] = {
            e.name: TokenBucket(e.rate_per_s, max(1.0, BURST_FACTOR * e.rate_per_s), tick)
            for e in self.entries
            if e.rate_per_s is not None
        }

    def identify(self, key: str) -> KeyEntry:
        """The entry whose hash matches ``key``; Unauthenticated when none does."""
        digest = hash_key(key)
        found: KeyEntry | None = None
        for (
            entry
        ) in self.entries:  # all of them, whatever matches: constant time in the match position
            match = hmac.compare_digest(entry.sha256, digest)
            found = entry if match else found
        if found is None:
            raise Unauthenticated("invalid API key")
        return found

    def authorize(self, authorization: str | None, scope: Scope) -> Principal:
        """Check an ``Authorization`` header value for ``scope``: Unauthenticated (401),
        PermissionDenied (403) or RateLimited (429, with the wait) when refused; the caller
        otherwise."""
        entry = self.identify(parse_bearer(authorization))
        if not entry.allows(scope):
            raise PermissionDenied(f"API key '{entry.name}' lacks the '{scope}' scope")
        bucket = self._buckets.get(entry.name)
        wait = bucket.take() if bucket is not None else 0.0
        if wait > 0:
            raise RateLimited(
                f"API key '{entry.name}' is over its rate of {entry.rate_per_s:g} requests/s", wait
            )
        return Principal(name=entry.name, scopes=entry.scopes)


def load_authenticator(
    mode: str, keys_file: str | Path, env: Mapping[str, str] | None = None
) -> Authenticator | None:
    """The authenticator of an ``auth`` configuration: None for mode ``none`` (open), else the
    keys from ``$COPUR_API_KEYS`` (the JSON document itself) when set, otherwise from
    ``keys_file``. ConfigError (one line naming the source) when the keys are missing or
    malformed."""
    if mode == "none":
        return None
    if mode != "keys":
        raise ConfigError(f"auth mode must be 'keys' or 'none', not {mode!r}")
    env = os.environ if env is None else env
    text = env.get(KEYS_ENV, "")
    keys = parse_keys(text, f"${KEYS_ENV}") if text.strip() else load_keys_file(keys_file)
    return Authenticator(keys)
