"""The roles of the cluster: a party (:mod:`.party`), the fusion center (:mod:`.fusion`) and the
adversary (:mod:`.adversary`). Each is a transport-free core under thin gRPC / HTTP adapters and
an ``app`` that wires them.

May import: :mod:`copur.errors`, :mod:`copur.science`, :mod:`copur.transport` and the client
package's wire layer; a role never imports another role, operations or evaluation.
``tests/test_layout.py`` enforces it."""
