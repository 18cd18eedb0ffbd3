"""``make proto``: generate the gRPC stubs from ``proto/`` into ``clients/copur_client/v1``
(package ``copur.v1``) and ``clients/copur_client/oip`` (the Open Inference Protocol v2, package
``inference``).

``generate(out)`` is also what the staleness test runs, into a temporary directory, to compare.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

__all__ = ["PROTO_ROOT", "generate", "main"]

PROTO_ROOT = Path(__file__).resolve().parents[3] / "proto"
STUB_ROOT = Path(__file__).resolve().parents[3] / "clients"


def generate(out: Path) -> list[Path]:
    """Run grpcio-tools' protoc on every .proto under ``proto/``; return the files written under
    ``out``."""
    from grpc_tools import protoc

    sources = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *sources,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError("protoc failed on " + " ".join(sources))
    return sorted(p for p in out.rglob("*_pb2*.py*"))


def main() -> None:
    """``make proto``: regenerate the stubs and print the files written."""
    written = generate(STUB_ROOT)
    for path in written:
        print(path.relative_to(STUB_ROOT.parent))
    sys.exit(0)


if __name__ == "__main__":
    main()
