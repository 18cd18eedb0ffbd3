"""The transport shared by every role: one way to serve gRPC (:mod:`.grpc_server`: health,
reflection, limits, mTLS), one way to run until a signal (:mod:`.lifecycle`), an HTTP app in a
background thread (:mod:`.http_server`), status mapping of domain errors (:mod:`.grpcutil`), the
HTTP app kit (:mod:`.webkit`), readiness probes, the cluster topology, mutual TLS and API keys.
The wire format itself (stubs and :mod:`copur_client.serde`) lives in the client package.

May import: :mod:`copur.errors`, :mod:`copur.transport` and the client package's wire layer
(``copur_client.serde``, ``copur_client.wire``, ``copur_client.v1``, ``copur_client.oip``); never
the science, a role, operations or evaluation. ``tests/test_layout.py`` enforces it."""
