from pathlib import Path

from copur.operations.protogen import STUB_ROOT, generate

STUB_DIRS = ("v1", "oip")  # copur.v1 and the Open Inference Protocol's `inference` package


def test_checked_in_stubs_match_the_proto_sources(tmp_path: Path) -> None:
    # Prepare / Execute: regenerate into a scratch directory.
    written = generate(tmp_path)

    # Assert: every generated file exists in the tree with identical content, and nothing extra is
    # checked in.
    rel = {p.relative_to(tmp_path) for p in written}
    checked_in = {
        p.relative_to(STUB_ROOT)
        for sub in STUB_DIRS
        for p in (STUB_ROOT / "copur_client" / sub).glob("*_pb2*.py*")
    }
    assert {p.parent.name for p in rel} == set(STUB_DIRS)
    assert rel == checked_in, "run `make proto`"
    for name in rel:
        assert (tmp_path / name).read_bytes() == (STUB_ROOT / name).read_bytes(), (
            f"{name} is stale: run `make proto`"
        )
