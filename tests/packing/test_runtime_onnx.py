"""The ONNX runtime: input checks, weights used in place, devices, and no `onnx` needed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import pytest

from llmos.errors import BadRequestError, ModelLoadError
from llmos.pack.manifest import Manifest
from llmos.pack.packer import PackSpec, pack_onnx
from llmos.runtimes.base import RuntimeOptions
from llmos.runtimes.loader import load_runtime
from llmos.runtimes.onnx import open_session, prepacks
from llmos.runtimes.validation import check_inputs

from .models import OUT, mlp_reference, mlp_weights, unpack

if TYPE_CHECKING:
    from conftest import Priorities  # tests/conftest.py

X = np.random.default_rng(3).standard_normal((4, 64)).astype(np.float32)


@pytest.fixture
def mlp_pack(mlp_file: Path) -> tuple[Manifest, dict[str, memoryview]]:
    return unpack(pack_onnx(mlp_file, PackSpec("mlp")).blob)


@pytest.mark.parametrize("inputs, match", [
    ({"x": X.astype(np.int64)}, r"input 'x': datatype INT64 given, model 'mlp' expects FP32"),
    ({"x": X[:, :63]}, r"input 'x': shape \[4, 63\] does not match the model's \[-1, 64\] "
                       r"\(-1 = any\)"),
    ({"x": X[0]}, r"input 'x': shape \[64\] does not match the model's \[-1, 64\]"),
    ({}, r"model 'mlp' needs input\(s\) x"),
    ({"x": X, "z": X}, r"model 'mlp' has no input 'z'"),
    ({"x": np.array([[b"a"] * 64], dtype=object)}, "datatype BYTES given, model 'mlp' expects"),
])
def test_bad_inputs_are_bad_requests(mlp_pack: tuple[Manifest, dict[str, memoryview]],
                                     inputs: dict[str, np.ndarray], match: str) -> None:
    """Checked against the runtime's public signature (what the data plane does, once)."""
    runtime = load_runtime(*mlp_pack, RuntimeOptions())
    with pytest.raises(BadRequestError, match=match) as info:
        runtime.infer(check_inputs("mlp", runtime.inputs, inputs))
    assert info.value.hint


def test_session_uses_the_payload_buffer_in_place(
        mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    manifest, files = mlp_pack
    unpacked = RuntimeOptions(prepack=False)  # prepacked, ORT keeps its own copy (by design)
    first = load_runtime(manifest, files, unpacked)
    second = load_runtime(manifest, files, unpacked)  # a second instance shares it
    expected = mlp_reference(X, mlp_weights())
    np.testing.assert_allclose(first.infer({"x": X})["y"], expected, rtol=1e-5, atol=1e-5)
    weights = files["weights.bin"]
    weights[:] = bytes(len(weights))  # had ORT copied the weights, this would change nothing
    for runtime in (first, second):
        np.testing.assert_array_equal(runtime.infer({"x": X})["y"], np.zeros((4, OUT)))


def test_session_options(mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    manifest, _ = mlp_pack
    assert prepacks(manifest, RuntimeOptions())  # the pack names its prepacked weights
    session = open_session(*mlp_pack, RuntimeOptions(intra_op_threads=1, inter_op_threads=1,
                                                     prepack=False))
    options = session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.disable_prepacking") == "1"
    # by default the pool threads spin, bounded (onnxruntime's own spin is not)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert options.get_session_config_entry("session.intra_op.spin_duration_us") == "20"
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert isinstance(session, ort.InferenceSession)
    assert len(session.weights) == 2  # the views and OrtValues live as long as the session


@pytest.mark.parametrize("spin_us", [0, 200])
def test_pool_threads_stop_spinning_when_told(
        spin_us: int, mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    """``spin_us`` bounds the pool threads' busy-wait after a run: idle, they burn next to
    no CPU (onnxruntime's own unbounded spin burnt ~33 of every 100 ms here, measured)."""
    session = open_session(*mlp_pack, RuntimeOptions(intra_op_threads=2, prepack=False,
                                                     spin_us=spin_us))
    entries = session.get_session_options().get_session_config_entry
    assert entries("session.intra_op.allow_spinning") == ("1" if spin_us else "0")
    x = np.random.default_rng(0).standard_normal((512, 64)).astype(np.float32)
    burnt = []
    for _ in range(3):
        for _ in range(20):
            session.run(None, {"x": x})
        t0 = time.process_time()
        time.sleep(0.1)
        burnt.append(time.process_time() - t0)
    assert min(burnt) < 0.01, f"CPU seconds burnt in 100 ms idle: {burnt}"


def _tasks() -> set[int]:
    return {int(t) for t in os.listdir("/proc/self/task")}


def test_the_sessions_thread_pool_runs_below_the_caller(
        priorities: Priorities, mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    """onnxruntime starts its intra-op pool threads (here 2: 3 threads, the caller one of
    them) while the session is built; built from the loop's thread they must still come
    out at the workers' priority, the caller left as it was."""
    before = _tasks()
    session = open_session(*mlp_pack, RuntimeOptions(intra_op_threads=3, prepack=False))
    deadline = time.monotonic() + 5
    while len(pool := _tasks() - before) > 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # the short-lived builder thread is on its way out
    want = priorities.base if priorities.workers is None else priorities.workers
    assert len(pool) == 2
    assert {priorities.nice_of(tid) for tid in pool} == {want}
    assert priorities.nice_of(threading.get_native_id()) == priorities.base
    np.testing.assert_allclose(session.run(None, {"x": X})[0], mlp_reference(X, mlp_weights()),
                               rtol=1e-5, atol=1e-5)


def test_cuda_without_cuda_provider_is_refused_not_moved_to_cpu(
        no_cuda_provider: None, mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    with pytest.raises(ModelLoadError, match=r"cuda:1 requested.*no CUDAExecutionProvider") as e:
        load_runtime(*mlp_pack, RuntimeOptions(device="cuda:1"))
    assert "cpu_fallback" in e.value.hint


@pytest.mark.gpu
def test_cuda_inference(cuda_provider: None,
                        mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    runtime = load_runtime(*mlp_pack, RuntimeOptions(device="cuda:0"))
    np.testing.assert_allclose(runtime.infer({"x": X})["y"], mlp_reference(X, mlp_weights()),
                               rtol=1e-3, atol=1e-3)


@pytest.mark.gpu
def test_a_cuda_session_no_longer_reads_the_host_weights(
        cuda_provider: None, mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    """On CUDA, onnxruntime copies the weights to the GPU while it builds the session:
    the decrypted host copy can then be given back (unlike on the CPU, above)."""
    manifest, files = mlp_pack
    runtime = load_runtime(manifest, files, RuntimeOptions(device="cuda:0"))
    before = runtime.infer({"x": X})["y"]
    weights = files["weights.bin"]
    weights[:] = bytes(len(weights))
    np.testing.assert_array_equal(runtime.infer({"x": X})["y"], before)
    np.testing.assert_allclose(before, mlp_reference(X, mlp_weights()), rtol=1e-3, atol=1e-3)


def test_unknown_device(mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    with pytest.raises(ModelLoadError, match="unknown device 'tpu'"):
        load_runtime(*mlp_pack, RuntimeOptions(device="tpu"))


def test_closed_runtime_refuses(mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    runtime = load_runtime(*mlp_pack, RuntimeOptions())
    runtime.close()
    with pytest.raises(ModelLoadError, match="closed"):
        runtime.infer({"x": X})


def test_other_kinds_are_not_this_loaders(
        mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    manifest, files = mlp_pack
    with pytest.raises(ModelLoadError, match="'causal-lm' model"):
        load_runtime(replace(manifest, kind="causal-lm"), files, RuntimeOptions())


def test_a_damaged_graph_is_a_load_error(
        mlp_pack: tuple[Manifest, dict[str, memoryview]]) -> None:
    manifest, files = mlp_pack
    graph = files["model.onnx"]
    graph[: len(graph) // 2] = b"\xff" * (len(graph) // 2)
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load pack 'mlp'"):
        load_runtime(manifest, files, RuntimeOptions())


def test_serving_needs_neither_onnx_nor_torch(mlp_file: Path, tmp_path: Path) -> None:
    pack = tmp_path / "mlp.llmpack"
    pack_onnx(mlp_file, PackSpec("mlp")).write(pack)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["onnx"] = None  # any import of onnx now fails
        sys.modules["torch"] = None
        import numpy as np
        from llmos.pack import container
        from llmos.runtimes.base import RuntimeOptions
        from llmos.runtimes.loader import load_runtime
        manifest, compressed = container.read_pack(__import__("pathlib").Path({str(pack)!r}))
        files = container.split_files(manifest, container.decompress_into([compressed], manifest))
        y = load_runtime(manifest, files, RuntimeOptions()).infer(
            {{"x": np.ones((2, 64), np.float32)}})["y"]
        print(y.shape)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"(2, {OUT})"


def test_string_tensors_travel_as_bytes(tmp_path: Path) -> None:
    """A graph without weights (no weights.bin) that takes and returns strings."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("StringConcat", ["s", "s"], ["t"])], "twice",
        [helper.make_tensor_value_info("s", TensorProto.STRING, [-1])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, [-1])])
    path = tmp_path / "upper.onnx"
    model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)],
                                    ir_version=9)
    onnx.save(model_proto, path)
    manifest, files = unpack(pack_onnx(path, PackSpec("twice")).blob)
    assert set(files) == {"model.onnx"} and "weights" not in manifest.extra
    runtime = load_runtime(manifest, files, RuntimeOptions())
    out = runtime.infer({"s": np.array([b"caf\xc3\xa9", b"ok"], dtype=object)})["t"]
    assert out.tolist() == ["cafécafé".encode(), b"okok"]
    with pytest.raises(BadRequestError, match="not UTF-8"):
        runtime.infer({"s": np.array([b"\xff"], dtype=object)})
