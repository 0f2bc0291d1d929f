"""Open Inference Protocol v2 JSON tensors <-> numpy (pure: no I/O, no aiohttp).

Requests carry ``inputs`` as ``{"name", "datatype", "shape", "data"}`` with ``data`` flat
(row-major) or nested; BYTES elements are JSON strings (UTF-8). Every malformation is a
``BadRequestError`` naming the field, so the web edge can answer 400 without a trace.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import numpy as np

from llmos.datatypes import V2_TO_NUMPY, v2_of
from llmos.errors import BadRequestError
from llmos.serving import wirejson

MAX_DIMS = 32  # numpy's own limit is 64; no model here has more than a handful

# What JSON values may land in each numpy kind ("b" bool, "i"/"u" int, "f" float).
_ACCEPTED_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


@dataclass(frozen=True)
class InferRequest:
    """A decoded v2 inference request."""

    inputs: Mapping[str, np.ndarray]
    id: str | None = None
    outputs: tuple[str, ...] | None = None  # names the client asked for; None = all
    parameters: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None  # the client's own time limit, when it gave one

    def deadline(self, server_s: float) -> float:
        """The request's deadline: the server's, or the client's when that is shorter."""
        return server_s if self.timeout_s is None else min(server_s, self.timeout_s)


def _bad(message: str, hint: str = "see the Open Inference Protocol v2 request format") -> NoReturn:
    raise BadRequestError(message, hint)


def parse_json(body: bytes) -> Any:
    """Strict JSON (``llmos.wirejson``): every malformation is a BadRequestError."""
    return wirejson.loads(body)


def _shape(name: str, raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(type(d) is int and d >= 0 for d in raw):
        _bad(f"input {name!r}: 'shape' must be a list of non-negative integers, "
             f"got {json.dumps(raw)[:200]}")
    if len(raw) > MAX_DIMS:
        _bad(f"input {name!r}: 'shape' has {len(raw)} dimensions, at most {MAX_DIMS} are "
             "supported", "GET /v2/models/NAME gives each input's shape")
    return tuple(raw)


def _flatten(data: Any) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _bytes_tensor(name: str, data: list[Any], shape: tuple[int, ...]) -> np.ndarray:
    flat = _flatten(data)
    if not all(isinstance(x, str) for x in flat):
        _bad(f"input {name!r}: BYTES data must be JSON strings")
    arr = np.empty(len(flat), dtype=object)
    arr[:] = [x.encode() for x in flat]
    return arr


def _numeric_tensor(name: str, data: list[Any], dtype: np.dtype[Any]) -> np.ndarray:
    try:
        arr = np.asarray(data)
    except ValueError:
        _bad(f"input {name!r}: nested 'data' is ragged (rows of different lengths)")
    if arr.size == 0:
        return np.empty(0, dtype=dtype)
    if dtype.kind in "iu" and arr.dtype.kind in "fO":
        arr = _big_integers(name, data, dtype, arr)
    if arr.dtype.kind not in _ACCEPTED_KINDS[dtype.kind]:
        _bad(f"input {name!r}: data of JSON type {_json_kind(arr.dtype)} does not fit "
             f"datatype {v2_of(np.empty(0, dtype))}")
    if dtype.kind in "iu" and arr.dtype != dtype:
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            _bad(f"input {name!r}: values outside the range of {v2_of(np.empty(0, dtype))}")
    out = arr.astype(dtype, copy=False)
    if dtype.kind == "f" and not np.isfinite(out).all():  # 1e400, or 1e39 as FP32
        _bad(f"input {name!r}: values outside the range of {v2_of(np.empty(0, dtype))}",
             "send finite numbers the datatype can hold")
    return out


def _big_integers(name: str, data: list[Any], dtype: np.dtype[Any],
                  arr: np.ndarray) -> np.ndarray:
    """numpy reads integers beyond int64 (UINT64's upper half) as floats: when every value
    is a JSON integer, convert them exactly instead (``arr`` unchanged otherwise)."""
    flat = _flatten(data)
    if not all(type(x) is int for x in flat):
        return arr
    try:
        return np.array(flat, dtype=dtype)
    except OverflowError:
        _bad(f"input {name!r}: values outside the range of {v2_of(np.empty(0, dtype))}")


def _json_kind(dtype: np.dtype[Any]) -> str:
    return {"b": "boolean", "i": "integer", "u": "integer", "f": "number"}.get(dtype.kind,
                                                                             "string/mixed")


def decode_tensor(raw: Any) -> tuple[str, np.ndarray]:
    """One v2 input object -> (name, array of the declared datatype and shape)."""
    if not isinstance(raw, dict):
        _bad(f"each input must be a JSON object, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        _bad("an input has no 'name'")
    datatype = raw.get("datatype")
    dtype = V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        _bad(f"input {name!r}: unknown datatype {datatype!r}",
             f"one of {', '.join(V2_TO_NUMPY)}")
    shape = _shape(name, raw.get("shape"))
    params = raw.get("parameters") or {}
    if isinstance(params, dict) and "binary_data_size" in params:
        _bad(f"input {name!r}: binary tensor data needs the body's raw bytes",
             "decode the body with llmos.serving.binary_tensors.decode_request")
    data = raw.get("data")
    if not isinstance(data, list):
        _bad(f"input {name!r}: 'data' must be a (flat or nested) JSON list")
    arr = _bytes_tensor(name, data, shape) if datatype == "BYTES" else \
        _numeric_tensor(name, data, dtype)
    expected = math.prod(shape)
    if arr.size != expected:
        _bad(f"input {name!r}: shape {list(shape)} needs {expected} values, data has {arr.size}")
    return name, arr.reshape(shape)


def decode_request(doc: Any,
                   decode: Callable[[Any], tuple[str, np.ndarray]] = decode_tensor
                   ) -> InferRequest:
    """A parsed v2 request body -> InferRequest (arrays in their declared datatypes).

    ``decode`` turns each input object into (name, array), in order: the binary tensor
    extension passes its own (``binary_tensors``), which reads raw inputs from the body."""
    if not isinstance(doc, dict):
        _bad("request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        _bad("request has no 'inputs' list")
    inputs: dict[str, np.ndarray] = {}
    for raw in raw_inputs:
        name, arr = decode(raw)
        if name in inputs:
            _bad(f"input {name!r} is given twice")
        inputs[name] = arr
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        _bad("'id' must be a string")
    outputs: tuple[str, ...] | None = None
    if doc.get("outputs") is not None:
        raw_out = doc["outputs"]
        if not isinstance(raw_out, list) or not all(
                isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw_out):
            _bad("'outputs' must be a list of objects with a 'name'")
        outputs = tuple(o["name"] for o in raw_out)
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        _bad("'parameters' must be a JSON object")
    return InferRequest(inputs=inputs, id=rid, outputs=outputs, parameters=params)


def encode_tensor(name: str, arr: np.ndarray, as_array: bool = False) -> dict[str, Any]:
    """One v2 output object. ``as_array``: numeric data stays a flat numpy array, which
    ``wirejson.dumps`` writes at C speed (``json.dumps`` cannot write it)."""
    if arr.dtype.kind in "OSU":
        flat = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                for x in arr.ravel().tolist()]
        return {"name": name, "datatype": "BYTES", "shape": list(arr.shape), "data": flat}
    data = np.ascontiguousarray(arr).ravel() if as_array and arr.dtype.isnative else \
        arr.ravel().tolist()
    return {"name": name, "datatype": v2_of(arr), "shape": list(arr.shape), "data": data}


def encode_response(model: str, version: str, request_id: str | None,
                    outputs: Mapping[str, np.ndarray],
                    only: Iterable[str] | None = None,
                    encode: Callable[[str, np.ndarray], Any] = encode_tensor) -> dict[str, Any]:
    names = list(outputs) if only is None else list(only)
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    doc["outputs"] = [encode(n, outputs[n]) for n in names]
    return doc


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


# --- the fast path: response bytes written directly ----------------------------------
# json.dumps spends most of a float response formatting each number with repr(); orjson
# (``wirejson.dumps``) writes a numpy array at C speed, each float the shortest text that
# reads back as the same value of its dtype.

def _wire_tensor(name: str, arr: np.ndarray) -> Any:
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():  # NaN / Infinity as json writes
        return wirejson.verbatim(encode_tensor(name, arr))
    return encode_tensor(name, arr, as_array=True)


def response_bytes(model: str, version: str, request_id: str | None,
                   outputs: Mapping[str, np.ndarray], only: Iterable[str]) -> bytes:
    """``dumps(encode_response(...))``, several times faster for numeric outputs."""
    return wirejson.dumps(encode_response(model, version, request_id, outputs, only,
                                          _wire_tensor))
