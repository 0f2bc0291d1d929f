"""One copy of the weights: a loaded ONNX model costs about its plaintext payload in RSS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from llmos.pack.packer import PackSpec, pack_onnx

PROBE = Path(__file__).with_name("rss_probe.py")
N = 4096  # a 4096 x 4096 float32 weight: 64 MiB


def probe(pack: Path, mode: str = "runtime", batch: int = 1) -> dict[str, int]:
    """RSS growth of loading ``pack`` once more in a fresh process (see rss_probe.py)."""
    done = subprocess.run([sys.executable, str(PROBE), str(pack), mode, str(batch)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, int] = json.loads(done.stdout)
    return result


def test_resident_growth_is_one_copy(tmp_path: Path) -> None:
    w = np.random.default_rng(0).standard_normal((N, N)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", N])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", N])],
        [numpy_helper.from_array(w, "w")])
    model = tmp_path / "big.onnx"
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                                    ir_version=8)
    onnx.save(model_proto, model)
    pack = tmp_path / "big.llmpack"
    pack_onnx(model, PackSpec("big", level=1)).write(pack)
    m = probe(pack)
    assert m["weights"] == w.nbytes
    assert m["load"] <= 1.2 * m["plain"], m  # a copy in ORT (or prepacking) would be 2x
    assert m["load"] >= 0.9 * m["plain"], m  # the payload itself is resident
    assert m["infer"] <= 1.2 * m["plain"], m
