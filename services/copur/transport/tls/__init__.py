"""Mutual TLS for every gRPC link: a development CA and per-service key pairs
(:mod:`copur.transport.tls.certs`, ``copur certs init``) and the gRPC credentials built from them
(:mod:`copur.transport.tls.credentials`). Nothing is imported here, so that the CLI starts
without loading grpc or cryptography."""
