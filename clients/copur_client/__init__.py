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
from copur_client.http import AdversaryControl, FusionClient, bundles_status_from_json
from copur_client.table import predict_command, predictions_table
from copur_client.wire import BundleRef, BundlesStatus, Certificate, PartyBundles, Prediction

__all__ = [
    "AdversaryControl",
    "AuthError",
    "BadRequest",
    "BundleRef",
    "BundlesStatus",
    "Certificate",
    "CopurClientError",
    "Forbidden",
    "FusionClient",
    "GrpcFusionClient",
    "GrpcTls",
    "NotFound",
    "PartyBundles",
    "Prediction",
    "RateLimited",
    "ServerError",
    "Timeout",
    "TlsError",
    "Unauthorized",
    "Unavailable",
    "bundles_status_from_json",
    "predict_command",
    "predictions_table",
]
