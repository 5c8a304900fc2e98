"""The committed clip_pb2.py is what proto/generate.py makes from clip.proto today."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_regenerating_the_protobuf_module_gives_the_committed_file():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install grpcio-tools); cannot regenerate clip_pb2.py")
    generate = runpy.run_path(str(ROOT / "proto" / "generate.py"))["generate"]
    committed = (ROOT / "shadowd" / "clip" / "clip_pb2.py").read_text()
    assert generate() == committed, "clip_pb2.py is stale: run `.venv/bin/python proto/generate.py` and commit it"
