"""The committed gRPC stubs are what the proto generates (regenerate: python -m service.api.codegen)."""

from __future__ import annotations

from pathlib import Path

from service.api.codegen import GEN_DIR, generate


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    assert fresh, "protoc wrote nothing"
    for path in fresh:
        committed = GEN_DIR / path.relative_to(tmp_path)
        assert committed.exists(), f"{committed} missing: run python -m service.api.codegen"
        assert committed.read_text() == path.read_text(), \
            f"{committed} differs from the proto: run python -m service.api.codegen"
    extra = {p.relative_to(GEN_DIR) for p in GEN_DIR.rglob("*.py*") if "__pycache__" not in p.parts}
    assert extra == {p.relative_to(tmp_path) for p in fresh}, "stale generated files in service/api/gen"


def test_stubs_import_inside_the_service_package() -> None:
    from service.api.gen.mallrec.v1 import recommender_pb2, recommender_pb2_grpc

    assert recommender_pb2.DESCRIPTOR.package == "mallrec.v1"
    assert hasattr(recommender_pb2_grpc, "RecommenderStub")
