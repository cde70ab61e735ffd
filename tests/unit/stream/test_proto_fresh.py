"""The committed generated stream code matches proto/dakr/v1/stream.proto.

Cases:
- regenerating into a temporary directory gives byte-identical files (run `make proto`
  after editing the .proto, then commit the result);
- the generated modules import as a package (no `dakr.v1` top-level import left over) and
  expose the service and the messages the client relies on.
"""

from __future__ import annotations

import pathlib

import pytest

from reconciler.stream import generate


@pytest.mark.parametrize("name", [*generate.OUTPUTS, "__init__.py"])
def test_generated_code_is_fresh(tmp_path: pathlib.Path, name: str) -> None:
    generate.generate(tmp_path)
    committed = generate.GEN_DIR / name
    assert committed.exists(), f"{committed} missing: run make proto"
    assert (tmp_path / name).read_bytes() == committed.read_bytes(), (
        f"{committed} is stale: run make proto")


def test_generated_code_imports_as_a_package() -> None:
    from reconciler.stream.gen import stream_pb2, stream_pb2_grpc

    text = (generate.GEN_DIR / "stream_pb2_grpc.py").read_text()
    assert "from dakr.v1 import" not in text
    assert hasattr(stream_pb2_grpc, "RecommendationStreamStub")
    msg = stream_pb2.PlatformMessage(recommendation=stream_pb2.Recommendation(sequence=7))
    assert stream_pb2.PlatformMessage.FromString(msg.SerializeToString()) == msg
