"""The v2 JSON codec: requests decode to the declared datatypes and shapes, or say why not."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from llmos.errors import BadRequestError
from llmos.pack.manifest import TensorSpec
from llmos.runtimes import validation
from llmos.serving import codec


def _req(*inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"inputs": list(inputs), **extra}


def _t(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


@pytest.mark.parametrize(("datatype", "data", "dtype"), [
    ("FP32", [1.5, 2, 3, 4, 5, 6], np.float32),
    ("FP64", [1.5, 2, 3, 4, 5, 6], np.float64),
    ("FP16", [1, 2, 3, 4, 5, 6], np.float16),
    ("INT64", [1, 2, 3, 4, 5, -6], np.int64),
    ("INT32", [1, 2, 3, 4, 5, -6], np.int32),
    ("INT8", [1, 2, 3, 4, 5, -6], np.int8),
    ("UINT8", [1, 2, 3, 4, 5, 255], np.uint8),
    ("BOOL", [True, False, True, True, False, False], np.bool_),
])
def test_flat_data_takes_declared_datatype_and_shape(datatype: str, data: list[Any],
                                                     dtype: type) -> None:
    req = codec.decode_request(_req(_t("x", datatype, [2, 3], data)))
    arr = req.inputs["x"]
    assert arr.dtype == np.dtype(dtype)
    assert arr.shape == (2, 3)
    assert arr.ravel().tolist() == np.asarray(data, dtype=dtype).tolist()


def test_uint64_beyond_int64_is_exact() -> None:
    req = codec.decode_request(_req(_t("x", "UINT64", [2], [2**64 - 1, 2**63 + 1])))
    assert req.inputs["x"].dtype == np.uint64
    assert req.inputs["x"].tolist() == [2**64 - 1, 2**63 + 1]


def test_nested_data_equals_flat_data() -> None:
    flat = codec.decode_request(_req(_t("x", "FP32", [2, 2], [1, 2, 3, 4])))
    nested = codec.decode_request(_req(_t("x", "FP32", [2, 2], [[1, 2], [3, 4]])))
    np.testing.assert_array_equal(flat.inputs["x"], nested.inputs["x"])


def test_bytes_are_utf8_strings() -> None:
    req = codec.decode_request(_req(_t("s", "BYTES", [2, 1], [["héllo"], ["x"]])))
    arr = req.inputs["s"]
    assert arr.shape == (2, 1)
    assert arr.ravel().tolist() == ["héllo".encode(), b"x"]


def test_id_outputs_and_parameters_are_kept() -> None:
    req = codec.decode_request(_req(_t("x", "INT64", [1], [7]), id="abc",
                                    outputs=[{"name": "y"}], parameters={"k": 1}))
    assert (req.id, req.outputs, dict(req.parameters)) == ("abc", ("y",), {"k": 1})


def test_empty_tensor() -> None:
    req = codec.decode_request(_req(_t("x", "INT64", [0, 3], [])))
    assert req.inputs["x"].shape == (0, 3)
    assert req.inputs["x"].dtype == np.int64


@pytest.mark.parametrize(("doc", "fragment"), [
    ([], "JSON object"),
    ({}, "no 'inputs'"),
    ({"inputs": []}, "no 'inputs'"),
    (_req(_t("x", "FP32", [2, 2], [1, 2, 3])), "needs 4 values, data has 3"),
    (_req(_t("x", "FLOAT", [1], [1])), "unknown datatype 'FLOAT'"),
    (_req(_t("x", "FP32", [2, -1], [1, 2])), "'shape' must be"),
    (_req(_t("x", "FP32", [2, 2], [[1, 2], [3]])), "ragged"),
    (_req(_t("x", "FP32", [1], ["a"])), "does not fit datatype FP32"),
    (_req(_t("x", "INT64", [2], [1.5, 2])), "does not fit datatype INT64"),
    (_req(_t("x", "INT8", [1], [300])), "outside the range of INT8"),
    (_req(_t("x", "BOOL", [1], [1])), "does not fit datatype BOOL"),
    (_req(_t("x", "BYTES", [1], [1])), "BYTES data must be JSON strings"),
    (_req(_t("x", "FP32", [1], 1.0)), "'data' must be"),
    (_req({"datatype": "FP32", "shape": [1], "data": [1]}), "no 'name'"),
    (_req(_t("x", "FP32", [1], [1]), _t("x", "FP32", [1], [1])), "given twice"),
    (_req(_t("x", "FP32", [1], [1]), id=5), "'id' must be a string"),
    (_req(_t("x", "FP32", [1], [1]), outputs=["y"]), "'outputs' must be"),
    (_req({**_t("x", "FP32", [1], [1]), "parameters": {"binary_data_size": 4}}),
     "binary tensor data needs the body's raw bytes"),
    (_req(_t("x", "UINT64", [2], [2**64, 1])), "outside the range of UINT64"),
])
def test_malformed_requests_name_the_problem(doc: Any, fragment: str) -> None:
    with pytest.raises(BadRequestError) as err:
        codec.decode_request(doc)
    assert fragment in err.value.message


def test_parse_json_refuses_garbage() -> None:
    with pytest.raises(BadRequestError, match="not valid JSON"):
        codec.parse_json(b"{nope")
    with pytest.raises(BadRequestError, match="nested deeper"):
        codec.parse_json(b"[" * 100_000)
    assert codec.parse_json(b'{"a": 1}') == {"a": 1}


SPECS = (TensorSpec("ids", "INT64", (-1, -1)), TensorSpec("mask", "INT64", (-1, 8)))


def test_check_inputs_accepts_dynamic_dims() -> None:
    ids = np.zeros((3, 5), np.int64)
    validation.check_inputs("m", SPECS, {"ids": ids, "mask": np.zeros((3, 8), np.int64)})


@pytest.mark.parametrize(("inputs", "fragment"), [
    ({"ids": np.zeros((1, 2), np.int64)}, "needs input(s) mask"),
    ({"ids": np.zeros((1, 2), np.int64), "mask": np.zeros((1, 8), np.int64),
      "extra": np.zeros(1)}, "has no input 'extra'"),
    ({"ids": np.zeros((1, 2), np.float32), "mask": np.zeros((1, 8), np.int64)},
     "datatype FP32 given, model 'm' expects INT64"),
    ({"ids": np.zeros((1, 2), np.int64), "mask": np.zeros((1, 7), np.int64)},
     "shape [1, 7] does not match the model's [-1, 8]"),
    ({"ids": np.zeros((2,), np.int64), "mask": np.zeros((1, 8), np.int64)},
     "shape [2] does not match"),
])
def test_check_inputs_names_the_mismatch(inputs: dict[str, np.ndarray], fragment: str) -> None:
    with pytest.raises(BadRequestError) as err:
        validation.check_inputs("m", SPECS, inputs)
    assert fragment in err.value.message


def test_check_outputs() -> None:
    validation.check_outputs("m", ["y"], (TensorSpec("y", "FP32", (-1,)),))
    with pytest.raises(BadRequestError, match="no output"):
        validation.check_outputs("m", ["z"], (TensorSpec("y", "FP32", (-1,)),))


def test_encode_response_round_trips_through_decode() -> None:
    y = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    s = np.array([[b"a"], [b"b"]], dtype=object)
    doc = json.loads(codec.dumps(codec.encode_response("m", "3", "id-1", {"y": y, "s": s})))
    assert doc["model_name"] == "m" and doc["model_version"] == "3" and doc["id"] == "id-1"
    assert doc["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [2, 3],
                                 "data": y.ravel().tolist()}
    assert doc["outputs"][1] == {"name": "s", "datatype": "BYTES", "shape": [2, 1],
                                 "data": ["a", "b"]}
    back = codec.decode_request({"inputs": doc["outputs"]})
    np.testing.assert_array_equal(back.inputs["y"], y)


def test_encode_response_only_requested_outputs_and_no_id() -> None:
    out: dict[str, np.ndarray] = {"a": np.zeros(1, np.int32), "b": np.ones(1, np.int64)}
    doc = codec.encode_response("m", "1", None, out, ["b"])
    assert "id" not in doc
    assert [o["name"] for o in doc["outputs"]] == ["b"]
    assert doc["outputs"][0]["datatype"] == "INT64"


def test_response_bytes_equal_the_plain_encoding_exactly() -> None:
    rng = np.random.default_rng(3)
    outputs: dict[str, np.ndarray] = {
        "f32": (rng.standard_normal((2, 5)) * 1e3).astype(np.float32),
        "f64": rng.standard_normal(4),
        "f16": rng.standard_normal(3).astype(np.float16),
        "tiny": np.array([1e-38, -3.4e38, 0.0, -0.0], np.float32),
        "nan": np.array([1.0, np.nan, np.inf], np.float32),
        "i64": np.array([[1, -2], [3, 2**40]], np.int64),
        "b": np.array([True, False]),
        "s": np.array([b"x", "é".encode()], dtype=object),
        "empty": np.zeros((0, 3), np.float32),
        "strided": np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2],  # a view
        "u64": np.array([2**64 - 1, 0], np.uint64),
    }
    names = list(outputs)
    fast = json.loads(codec.response_bytes("m", "2", "r1", outputs, names))
    plain = json.loads(codec.dumps(codec.encode_response("m", "2", "r1", outputs, names)))
    assert fast.keys() == plain.keys() and fast["id"] == "r1"
    for f, p in zip(fast["outputs"], plain["outputs"], strict=True):
        assert (f["name"], f["datatype"], f["shape"]) == (p["name"], p["datatype"], p["shape"])
        arr = outputs[f["name"]]
        if arr.dtype.kind == "f":  # the same numbers once read back as the tensor's dtype
            np.testing.assert_array_equal(np.array(f["data"], arr.dtype), arr.ravel())
        else:
            assert f["data"] == p["data"]
