"""The small pure functions of the tensor, sealed-load and LLM sections."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from bench import generation, run, sealed_load, tensor, wrk
from bench.model_folder import ModelFolder, ModelFolderError, embedder_settings
from bench.peers.embedder import _pool
from llmos.pack.manifest import FileEntry, Manifest, TensorSpec


def test_request_body_is_a_v2_bytes_tensor() -> None:
    doc = json.loads(tensor.request_body("text", ["a", "b"]))
    assert doc == {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2],
                               "data": ["a", "b"]}]}


def test_first_output_is_shaped_and_cosine_compares() -> None:
    answer = json.dumps({"outputs": [{"name": "embedding", "datatype": "FP32",
                                      "shape": [1, 3], "data": [1.0, 0.0, 0.0]}]}).encode()
    vec = tensor.first_output(answer)
    assert vec.shape == (1, 3)
    assert tensor.cosine(vec, np.array([[2.0, 0.0, 0.0]])) == pytest.approx(1.0)
    assert tensor.cosine(vec, np.array([[0.0, 1.0, 0.0]])) == pytest.approx(0.0)
    assert math.isnan(tensor.cosine(vec, np.zeros((1, 3))))


def test_openssl_speed_machine_readable_line() -> None:
    out = "+DT:AES-256-GCM:3:1048576\n+R:900:AES-256-GCM:3.0\n+H:1048576\n" \
          "+F:25:AES-256-GCM:314572800.00\n"
    assert sealed_load.parse_openssl_speed(out) == 314572800.0
    with pytest.raises(ValueError):
        sealed_load.parse_openssl_speed("Doing aes-256-gcm for 3s\n")


def test_llm_runs_summarise_to_medians() -> None:
    runs = [{"ttft_ms": 30.0, "decode_tok_s": 90.0, "tokens": 128},
            {"ttft_ms": 10.0, "decode_tok_s": 100.0, "tokens": 128},
            {"ttft_ms": 20.0, "decode_tok_s": 80.0, "tokens": 120}]
    assert generation.summarize(runs) == {"ttft_ms": 20.0, "decode_tok_s": 90.0,
                                          "tokens": 128, "runs": 3}


def _manifest(extra: dict[str, object]) -> Manifest:
    return Manifest(name="m", version="1", kind="embedding", runtime="onnx",
                    inputs=(TensorSpec("text", "BYTES", (-1,)),),
                    outputs=(TensorSpec("embedding", "FP32", (-1, 4)),),
                    files=(FileEntry("model.onnx", 1, "0" * 64),), sha256="0" * 64,
                    size_plain=1, size_packed=1, extra=extra)


def test_embedder_settings_follow_the_pack() -> None:
    m = _manifest({"embedding": {"tokenizer": "tokenizer.json", "max_length": 128, "dim": 4}})
    assert embedder_settings(m, threads=2) == {"max_length": 128, "pooling": "none",
                                               "normalize": False, "intra_op_threads": 2}
    with pytest.raises(ModelFolderError):
        embedder_settings(_manifest({}), threads=0)


def test_mean_pooling_ignores_padding() -> None:
    hidden = np.array([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert _pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert _pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]
    pooled = np.ones((1, 2), dtype=np.float32)
    assert _pool(pooled, mask, "mean") is pooled  # the graph pooled already


def test_rotation_gives_each_contestant_the_first_slot() -> None:
    names = ["a", "b", "c"]
    firsts = {tensor.rotated(names, i)[0] for i in range(3)}
    assert firsts == {"a", "b", "c"}
    assert sorted(tensor.rotated(names, 5)) == names
    assert tensor.rotated([], 2) == []


def test_compare_runs_another_trees_llmos_beside_this_one(tmp_path: Path) -> None:
    opts = run.parse_args(["--only", "tensor", "--compare", f"main={tmp_path}"])
    assert opts.compare == (("main", tmp_path.resolve()),)
    setup = tensor.TensorSetup(cast(ModelFolder, None), tmp_path / "x.sealed",
                               tmp_path / "key", tmp_path, tmp_path / "scratch", (1,),
                               wrk.WrkSettings(1, 1), compare=opts.compare)
    names = [name for name, _ in tensor._contestants(setup)[0]]
    assert names == ["llmos", "llmos main"]
    spec = tensor.llmos_spec(setup, "main", tmp_path)
    assert spec.env == {"PYTHONPATH": str(tmp_path.resolve())}
    assert (tmp_path / "scratch" / "llmos-main.toml").is_file()


def test_a_variant_runs_this_trees_llmos_with_other_model_settings(tmp_path: Path) -> None:
    opts = run.parse_args(["--only", "tensor", "--variant",
                           "spin=spin_us=200,threads=1,server.cpu_awake_s=0"])
    assert opts.variants == (tensor.Variant("spin", "cpu_awake_s = 0\n",
                                            "spin_us = 200\nthreads = 1\n"),)
    setup = tensor.TensorSetup(cast(ModelFolder, None), tmp_path / "x.sealed",
                               tmp_path / "key", tmp_path, tmp_path / "scratch", (1,),
                               wrk.WrkSettings(1, 1), variants=opts.variants)
    assert [name for name, _ in tensor._contestants(setup)[0]] == ["llmos", "llmos spin"]
    spec = tensor.llmos_spec(setup, "spin", None, opts.variants[0])
    assert spec.env == {}
    written = tomllib.loads((tmp_path / "scratch" / "llmos-spin.toml").read_text())
    assert written["models"][0]["spin_us"] == 200 and written["models"][0]["threads"] == 1
    assert written["server"]["cpu_awake_s"] == 0 and written["server"]["log_level"] == "WARNING"


def test_llm_prefill_report_sets_before_beside_after() -> None:
    from bench import llm_prefill

    before = {"ttft repeated ms": 300.0, "@8 / @1": 1.5}
    after = {"ttft repeated ms": 30.0, "@8 / @1": 2.0}
    text = llm_prefill.report("smollm2", "int8", 64, 3, 90, {"before": before, "after": after},
                              (1.0, 2.0))
    assert "| ttft repeated ms | 300.0 | 30.0 | 0.10 |" in text
    assert "| @8 / @1 | 1.5 | 2.0 | 1.33 |" in text
    assert "Load average 1.0 before, 2.0 after" in text
    off, on = llm_prefill.limits(False), llm_prefill.limits(True)
    assert off.prefix_cache_bytes == 0 and on.prefix_cache_bytes > 0
    assert off.prefill_chunk > 100_000 > on.prefill_chunk


def test_llm_ttft_report_compares_llmos_with_llamacpp() -> None:
    from bench import llm_ttft

    medians = {"LLM OS": {"unseen": 200.0, "repeated": 20.0},
               "llama.cpp server": {"unseen": 160.0, "repeated": 25.0}}
    text = llm_ttft.report(medians, 5, (1.0, 1.5), ["a note"])
    assert "| unseen | 200 | 160 | 1.25 |" in text
    assert "| repeated | 20 | 25 | 0.80 |" in text
    assert text.rstrip().endswith("a note")
    alone = llm_ttft.report({"LLM OS": {"unseen": 200.0}}, 5, (1.0, 1.5), [])
    assert "| unseen | 200 |" in alone and "llama.cpp" not in alone
    first, second = llm_ttft.unseen(), llm_ttft.unseen()
    assert first[0]["content"] != second[0]["content"]  # nothing in common up front
    assert llm_ttft.shared()[0] == llm_ttft.shared()[0]
