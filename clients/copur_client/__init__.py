"""Client library for the CoPur fusion center and adversary control endpoint."""

from copur_client.errors import (
    AuthError,
    BadRequest,
    CopurClientError,
    Forbidden,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    TlsError,
    Unauthorized,
    Unavailable,
)
from copur_client.grpc_client import GrpcFusionClient, GrpcTls
from copur_client.http import AdversaryControl, FusionClient
from copur_client.table import predict_command, predictions_table
from copur_client.wire import Certificate, Prediction

__all__ = [
    "AdversaryControl",
    "AuthError",
    "BadRequest",
    "Certificate",
    "CopurClientError",
    "Forbidden",
    "FusionClient",
    "GrpcFusionClient",
    "GrpcTls",
    "NotFound",
    "Prediction",
    "RateLimited",
    "ServerError",
    "Timeout",
    "TlsError",
    "Unauthorized",
    "Unavailable",
    "predict_command",
    "predictions_table",
]
