"""API keys for the HTTP and gRPC front doors: a keys file of hashes and scopes, constant-time
verification, per-key rate limits. Transport-free: the FastAPI glue is
:mod:`copur.transport.auth.web`, the gRPC one :mod:`copur.transport.auth.grpcauth`."""

from copur.transport.auth.devkeys import add_key, dev_key, dev_key_path, init_keys
from copur.transport.auth.errors import AuthError, PermissionDenied, RateLimited, Unauthenticated
from copur.transport.auth.guard import Authenticator, Principal, load_authenticator, parse_bearer
from copur.transport.auth.keys import (
    SCOPES,
    KeyEntry,
    KeysFile,
    Scope,
    hash_key,
    load_keys_file,
    new_key,
)

__all__ = [
    "SCOPES",
    "AuthError",
    "Authenticator",
    "KeyEntry",
    "KeysFile",
    "PermissionDenied",
    "Principal",
    "RateLimited",
    "Scope",
    "Unauthenticated",
    "add_key",
    "dev_key",
    "dev_key_path",
    "hash_key",
    "init_keys",
    "load_authenticator",
    "load_keys_file",
    "new_key",
    "parse_bearer",
]
