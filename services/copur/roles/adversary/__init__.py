"""The adversary service: a compromised party that forwards to the real one and corrupts its answers
with the attack library, switched live over HTTP. Split like the fusion center: the transport-free
core (:mod:`.proxy`, with :mod:`.corrupt`, :mod:`.policy`, :mod:`.donors`), the gRPC adapter
(:mod:`.grpc_api`) and upstream client (:mod:`.upstream`), the HTTP control API (:mod:`.control`)
and the app wiring them (:mod:`.app`)."""

from copur.roles.adversary.app import AdversaryApp, serve_adversary
from copur.roles.adversary.corrupt import AdversaryContext, corrupt_block
from copur.roles.adversary.policy import Policy, PolicyState
from copur.roles.adversary.proxy import DROP_DETAILS, AdversaryCore

__all__ = [
    "DROP_DETAILS",
    "AdversaryApp",
    "AdversaryContext",
    "AdversaryCore",
    "Policy",
    "PolicyState",
    "corrupt_block",
    "serve_adversary",
]
