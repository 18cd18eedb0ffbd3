"""The fusion center role: transport-free handler, batcher, worker, and thin HTTP / gRPC
adapters, for ``/v1`` and for the Open Inference Protocol v2 (:mod:`.oip` and its adapters)."""

from copur.roles.fusion.app import build_handler, run_fusion, serve_fusion
from copur.roles.fusion.handler import FusionHandler, FusionSettings

__all__ = ["FusionHandler", "FusionSettings", "build_handler", "run_fusion", "serve_fusion"]
