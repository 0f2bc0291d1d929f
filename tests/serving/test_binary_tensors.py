"""The binary tensor data extension's codec, against bodies the stock tritonclient builds and
parses (``generate_request_body`` / ``parse_response_body``: no server in between)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest
import tritonclient.http as httpclient

from llmos.datatypes import v2_of
from llmos.errors import BadRequestError
from llmos.serving import binary_tensors as bt

Client = httpclient.InferenceServerClient
NUMERIC = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def sample(datatype: str, shape: tuple[int, ...] = (2, 3), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dtype = np.dtype(NUMERIC[datatype])
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(np.bool_)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    return (rng.standard_normal(shape) * 1000).astype(dtype)


def triton_body(arrays: dict[str, np.ndarray], binary: bool = True,
                outputs: list[Any] | None = None) -> tuple[bytes, str | None]:
    inputs = []
    for name, arr in arrays.items():
        dt = "BYTES" if arr.dtype.kind == "O" else v2_of(arr)
        i = httpclient.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    body, size = Client.generate_request_body(inputs, outputs=outputs)
    return bytes(body), None if size is None else str(size)


def head_and(doc: dict[str, Any], *chunks: bytes) -> tuple[bytes, str]:
    head = json.dumps(doc).encode()
    return head + b"".join(chunks), str(len(head))


def raw(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape,
            "parameters": {"binary_data_size": size}}


@pytest.mark.parametrize("datatype", list(NUMERIC))
def test_every_numeric_datatype_decodes_as_a_view_of_the_body(datatype: str) -> None:
    arr = sample(datatype)
    body, header = triton_body({"x": arr})
    assert header is not None
    got = bt.decode_request(body, header).request.inputs["x"]
    assert got.dtype == arr.dtype and got.shape == arr.shape
    np.testing.assert_array_equal(got, arr)
    assert np.shares_memory(got, np.frombuffer(body, np.uint8))  # not copied
    assert not got.flags.writeable


@pytest.mark.parametrize("datatype", list(NUMERIC))
def test_binary_and_json_requests_decode_to_the_same_arrays(datatype: str) -> None:
    arr = sample(datatype, (3, 2), seed=1)
    by_json = bt.decode_request(*triton_body({"x": arr}, binary=False)).request.inputs["x"]
    by_raw = bt.decode_request(*triton_body({"x": arr})).request.inputs["x"]
    np.testing.assert_array_equal(by_json, by_raw)
    assert by_json.dtype == by_raw.dtype


def test_bytes_elements_carry_length_prefixes_and_any_bytes() -> None:
    texts = np.array([b"", "héllo".encode(), b"\xff\x00raw", b"x" * 300], dtype=object)
    body, header = triton_body({"s": texts.reshape(2, 2)})
    got = bt.decode_request(body, header).request.inputs["s"]
    assert got.shape == (2, 2) and got.dtype == object
    assert got.ravel().tolist() == texts.tolist()


def test_binary_and_json_inputs_mix_in_one_request() -> None:
    ids = np.arange(6, dtype=np.int64).reshape(2, 3)
    mask = np.ones((2, 3), np.float32)
    doc = {"inputs": [raw("ids", "INT64", [2, 3], 48),
                      {"name": "j", "datatype": "INT32", "shape": [2], "data": [5, 6]},
                      raw("mask", "FP32", [2, 3], 24)]}
    body, header = head_and(doc, ids.tobytes(), mask.tobytes())
    got = bt.decode_request(body, header).request.inputs
    np.testing.assert_array_equal(got["ids"], ids)
    np.testing.assert_array_equal(got["mask"], mask)
    assert got["j"].tolist() == [5, 6]


def test_empty_tensors_and_a_json_only_body() -> None:
    doc = {"inputs": [raw("x", "FP32", [0, 4], 0), raw("s", "BYTES", [0], 0)]}
    got = bt.decode_request(*head_and(doc)).request.inputs
    assert got["x"].shape == (0, 4) and got["s"].shape == (0,)
    plain = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1],
                                    "data": [2.5]}]}).encode()
    assert bt.decode_request(plain, None).request.inputs["x"].tolist() == [2.5]


def test_output_choice_follows_the_request_and_each_output_overrides_it() -> None:
    x = {"x": sample("FP32")}
    no_outputs = bt.decode_request(*triton_body(x))  # tritonclient's default
    assert no_outputs.binary("y") and no_outputs.binary("anything")
    asked = [httpclient.InferRequestedOutput("y", binary_data=True),
             httpclient.InferRequestedOutput("z", binary_data=False)]
    per_output = bt.decode_request(*triton_body(x, outputs=asked))
    assert per_output.binary("y") and not per_output.binary("z")
    assert per_output.request.outputs == ("y", "z")
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
           "parameters": {"binary_data_output": True},
           "outputs": [{"name": "y", "parameters": {"binary_data": False}}, {"name": "z"}]}
    mixed = bt.decode_request(json.dumps(doc).encode(), None)
    assert not mixed.binary("y") and mixed.binary("z")
    plain = bt.decode_request(json.dumps({"inputs": doc["inputs"]}).encode(), None)
    assert not plain.binary("y")


def parse(answer: bt.WireResponse) -> Any:
    return Client.parse_response_body(answer.body, header_length=answer.header_length)


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_binary_outputs_parse_in_tritonclient(datatype: str) -> None:
    arr = np.array([b"a", b"", "é".encode(), b"\x00\xff"], dtype=object).reshape(2, 2) \
        if datatype == "BYTES" else sample(datatype, (4, 5), seed=2)
    answer = bt.encode_response("m", "1", "r1", {"y": arr, "z": arr[:1]}, ["y", "z"],
                                lambda name: True)
    assert answer.content_type == "application/octet-stream"
    assert answer.headers == {"Inference-Header-Content-Length": str(answer.header_length)}
    head = json.loads(answer.body[:answer.header_length])
    assert head["id"] == "r1" and head["model_name"] == "m"
    assert head["outputs"][0]["datatype"] == datatype
    result = parse(answer)
    for name, want in (("y", arr), ("z", arr[:1])):
        got = result.as_numpy(name)
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_json_and_binary_outputs_mix_and_json_alone_stays_the_fast_path() -> None:
    y = sample("FP32", (2, 2))
    s = np.array([b"one", b"two"], dtype=object)
    mixed = bt.encode_response("m", "1", None, {"y": y, "s": s}, ["y", "s"],
                               lambda name: name == "y")
    result = parse(mixed)
    np.testing.assert_array_equal(result.as_numpy("y"), y)
    assert result.as_numpy("s").tolist() == ["one", "two"]  # tritonclient: JSON BYTES = str
    assert "data" in result.get_output("s") and "data" not in result.get_output("y")
    plain = bt.encode_response("m", "1", None, {"y": y}, ["y"], lambda name: False)
    assert plain.content_type == "application/json" and plain.headers == {}
    data = json.loads(plain.body)["outputs"][0]["data"]
    np.testing.assert_array_equal(np.array(data, np.float32), y.ravel())


def test_noncontiguous_and_big_endian_outputs_go_out_little_endian() -> None:
    base = np.arange(12, dtype=">i4").reshape(3, 4)
    answer = bt.encode_response("m", "1", None, {"y": base.T}, ["y"], lambda name: True)
    np.testing.assert_array_equal(parse(answer).as_numpy("y"), base.T)


def bad(body: bytes, header: str | None) -> str:
    with pytest.raises(BadRequestError) as err:
        bt.decode_request(body, header)
    return err.value.message + " | " + err.value.hint


F4 = np.arange(4, dtype=np.float32).tobytes()


@pytest.mark.parametrize(("doc", "chunks", "fragments"), [
    ({"inputs": [raw("x", "FP32", [2, 2], 12)]}, [F4[:12]],
     ["input 'x'", "binary_data_size is 12", "needs 16 bytes"]),
    ({"inputs": [raw("x", "FP32", [2, 2], 16)]}, [F4[:10]],
     ["input 'x'", "binary_data_size is 16", "10 byte(s) left", "truncated"]),
    ({"inputs": [raw("x", "FP32", [2, 2], 16)]}, [F4, b"??"],
     ["2 byte(s) after the JSON"]),
    ({"inputs": [raw("x", "FP32", [4], -4)]}, [F4],
     ["input 'x'", "binary_data_size must be a non-negative integer"]),
    ({"inputs": [{**raw("x", "FP32", [4], 16), "data": [1, 2, 3, 4]}]}, [F4],
     ["input 'x'", "both 'data' and parameters.binary_data_size"]),
    ({"inputs": [raw("b", "BOOL", [2], 2)]}, [b"\x01\x02"], ["input 'b'", "0 or 1"]),
    ({"inputs": [raw("h", "BF16", [2], 4)]}, [b"\0" * 4], ["input 'h'", "BF16"]),
    ({"inputs": [{"name": "h", "datatype": "BF16", "shape": [1], "data": [1.0]}]}, [],
     ["input 'h'", "BF16"]),
    ({"inputs": [raw("x", "FP33", [1], 4)]}, [F4[:4]], ["input 'x'", "unknown datatype"]),
    ({"inputs": [raw("x", "FP32", [-1], 4)]}, [F4[:4]], ["input 'x'", "'shape'"]),
    ({"inputs": [raw("s", "BYTES", [3], 13)]}, [struct.pack("<I", 5) + b"hello" + b"\0" * 4],
     ["input 's'", "holds 2 BYTES element(s), shape needs 3"]),
    ({"inputs": [raw("s", "BYTES", [10**6, 10**6], 8)]}, [struct.pack("<I", 4) + b"abcd"],
     ["input 's'", "shape needs 1000000000000 BYTES element(s)"]),
    ({"inputs": [raw("s", "BYTES", [1], 8)]}, [struct.pack("<I", 50) + b"abcd"],
     ["input 's'", "element 0 says 50 bytes"]),
    ({"inputs": [raw("s", "BYTES", [1], 10)]}, [struct.pack("<I", 1) + b"abcdef"],
     ["input 's'", "take 5"]),
    ({"inputs": [{**raw("x", "FP32", [1], 4),
                  "parameters": {"shared_memory_region": "r", "binary_data_size": 4}}]},
     [F4[:4]], ["input 'x'", "'shared_memory_region' is not supported"]),
    ({"inputs": [raw("x", "FP32", [1], 4)],
      "outputs": [{"name": "y", "parameters": {"classification": 3}}]},
     [F4[:4]], ["output 'y'", "'classification' is not supported"]),
    ({"inputs": [raw("x", "FP32", [1], 4)],
      "outputs": [{"name": "y", "parameters": {"binary_data": "yes"}}]},
     [F4[:4]], ["output 'y'", "binary_data must be true or false"]),
    ({"inputs": [raw("x", "FP32", [1], 4)], "parameters": {"binary_data_output": 1}},
     [F4[:4]], ["binary_data_output must be true or false"]),
])
def test_malformed_binary_requests_name_the_field(doc: dict[str, Any], chunks: list[bytes],
                                                  fragments: list[str]) -> None:
    message = bad(*head_and(doc, *chunks))
    for fragment in fragments:
        assert fragment in message


def test_timeout_shortens_the_deadline_and_priority_or_sequences_are_refused() -> None:
    x = {"x": sample("FP32")}
    inputs = [httpclient.InferInput("x", [2, 3], "FP32")]
    inputs[0].set_data_from_numpy(x["x"])
    body, size = Client.generate_request_body(inputs, timeout=250_000)
    wire = bt.decode_request(bytes(body), str(size))
    assert wire.timeout_s == 0.25 and wire.deadline(30.0) == 0.25 and wire.deadline(0.1) == 0.1
    assert bt.decode_request(*triton_body(x)).deadline(30.0) == 30.0
    body, size = Client.generate_request_body(inputs, priority=2)
    assert "priority" in bad(bytes(body), str(size))
    body, size = Client.generate_request_body(inputs, sequence_id=7, sequence_start=True)
    assert "sequence_id" in bad(bytes(body), str(size))
    doc = {"inputs": [raw("x", "FP32", [1], 4)], "parameters": {"timeout": 1.5}}
    assert "parameters.timeout" in bad(*head_and(doc, F4[:4]))
    doc["parameters"] = {"content_type": "np", "timeout": 0}  # codec hints pass
    assert bt.decode_request(*head_and(doc, F4[:4])).timeout_s is None


@pytest.mark.parametrize(("header", "fragment"), [
    ("abc", "must be a non-negative integer"),
    ("-3", "must be a non-negative integer"),
    ("1e3", "must be a non-negative integer"),
    ("99999", "but the body has only"),
    ("9" * 5000, "must be a non-negative integer"),
    ("", "must be a non-negative integer"),
    ("10", "not valid JSON"),
])
def test_a_bad_header_length_is_refused_naming_the_header(header: str, fragment: str) -> None:
    body, _ = head_and({"inputs": [raw("x", "FP32", [4], 16)]}, F4)
    message = bad(body, header)
    assert fragment in message and "Inference-Header-Content-Length" in message


def test_deeply_nested_json_is_a_400_not_a_crash() -> None:
    assert "nested deeper" in bad(b"[" * 100_000, None)


def test_raw_bytes_without_the_header_say_the_header_is_missing() -> None:
    body, _ = triton_body({"x": sample("FP32")})
    message = bad(body, None)
    assert "not valid JSON" in message and "Inference-Header-Content-Length" in message
    doc = {"inputs": [raw("x", "FP32", [4], 16)]}
    assert "0 byte(s) left" in bad(json.dumps(doc).encode(), None)
