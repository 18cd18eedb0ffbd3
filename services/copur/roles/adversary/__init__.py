"""The adversary service: a compromised party that forwards to the real one and corrupts its answers
with the attack library, switched live over HTTP."""

from copur.roles.adversary.corrupt import AdversaryContext, corrupt_block
from copur.roles.adversary.policy import Policy, PolicyState
from copur.roles.adversary.server import AdversaryApp, serve_adversary

__all__ = ["AdversaryApp", "AdversaryContext", "Policy", "PolicyState", "corrupt_block", "serve_adversary"]
