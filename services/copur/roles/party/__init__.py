"""The party role: gRPC ``Embed`` over the party's own columns and extractor."""

from copur.roles.party.core import PartyCore
from copur.roles.party.server import PartyApp, serve_party

__all__ = ["PartyApp", "PartyCore", "serve_party"]
