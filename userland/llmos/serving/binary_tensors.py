"""The Open Inference Protocol v2 binary tensor data extension (pure: bytes in, bytes out).

A request or response body is a JSON object followed by raw tensor bytes; the
``Inference-Header-Content-Length`` header says where the JSON ends. An input with
``parameters.binary_data_size`` takes that many bytes, in the order the inputs are listed;
the rest of the input is plain JSON (``codec``). Raw tensors are little-endian, row-major,
unpadded; BOOL is one byte (0 or 1) per element; BYTES elements are each a 4-byte
little-endian length and then the bytes.

Numeric inputs are numpy views of the request body (``np.frombuffer`` on a memoryview), not
copies. They are read-only, and unaligned when the client's header length puts them there:
numpy and onnxruntime read such arrays as they are (same results as an aligned copy); the
TorchScript runtime copies them, as torch wants writable arrays.

Of Triton's request parameters, ``timeout`` (microseconds) shortens the request's deadline;
a ``priority`` or ``sequence_id`` is refused (one queue, stateless models); other parameters
(``content_type`` hints and the like) do not change the answer and pass.

Outputs come back as raw bytes when the request asks: ``parameters.binary_data_output`` for
every output, ``parameters.binary_data`` on one requested output (which wins). A request
that asks for nothing gets JSON, as before (tritonclient asks for binary outputs by
default). Every malformation is a ``BadRequestError`` that names the field.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import numpy as np

from llmos.datatypes import V2_TO_NUMPY, v2_of
from llmos.errors import BadRequestError
from llmos.serving import codec, wirejson

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
EXTENSION = "binary_tensor_data"  # its name in the server metadata's "extensions"

SIZE = "binary_data_size"
OUTPUT_FLAG = "binary_data"
REQUEST_FLAG = "binary_data_output"
# Parameters of extensions this server does not implement: refused, never ignored.
_UNSUPPORTED_INPUT = ("shared_memory_region", "shared_memory_byte_size",
                      "shared_memory_offset")
_UNSUPPORTED_OUTPUT = ("classification", *_UNSUPPORTED_INPUT)

_LENGTH = struct.Struct("<I")
_HINT = "see the binary tensor data extension of the Open Inference Protocol v2"


def _bad(message: str, hint: str = _HINT) -> NoReturn:
    raise BadRequestError(message, hint)


@dataclass(frozen=True)
class WireRequest:
    """A decoded request and how its outputs are to be sent back."""

    request: codec.InferRequest
    binary_default: bool = False  # parameters.binary_data_output
    binary_outputs: Mapping[str, bool] = field(default_factory=dict)  # per-output binary_data

    def binary(self, output: str) -> bool:
        return self.binary_outputs.get(output, self.binary_default)

    @property
    def timeout_s(self) -> float | None:
        """parameters.timeout, when the client gave one (``request.timeout_s``)."""
        return self.request.timeout_s

    def deadline(self, server_s: float) -> float:
        return self.request.deadline(server_s)


@dataclass(frozen=True)
class WireResponse:
    """A response body and the headers that go with it."""

    body: bytes
    content_type: str
    header_length: int | None = None  # the JSON part's length, when raw bytes follow

    @property
    def headers(self) -> dict[str, str]:
        if self.header_length is None:
            return {}
        return {HEADER_LENGTH: str(self.header_length)}


# --- requests ----------------------------------------------------------------------------

def header_length(raw: str | None, body_size: int) -> int | None:
    """The JSON part's length from the header's text; None when there is no header."""
    if raw is None:
        return None
    text = raw.strip()
    # More than 18 digits is longer than any body, and int() raises past 4300 of them.
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        _bad(f"header {HEADER_LENGTH} must be a non-negative integer, got {raw[:40]!r}")
    length = int(text)
    if length > body_size:
        _bad(f"header {HEADER_LENGTH} is {length} but the body has only {body_size} bytes",
             "the header gives the length of the JSON object at the start of the body")
    return length


def _parse_header(head: bytes, has_header: bool) -> Any:
    """The JSON header, strictly (``wirejson``); a refusal's hint says what the binary
    extension needs when the header length is the likely cause."""
    try:
        return wirejson.loads(head)
    except BadRequestError as err:
        message = err.message
        if "not UTF-8" in message:  # raw tensor bytes, most likely
            message = "request body is not valid JSON: " + message.removeprefix(
                "request body is ")
        elif "not valid JSON" not in message:
            raise  # nesting, NaN, lone surrogates: the JSON itself is at fault
        if has_header:
            hint = f"check {HEADER_LENGTH}: it must be the exact length of the JSON object"
        elif "not UTF-8" in err.message or "Extra data" in message:
            hint = (f"binary tensor data after the JSON needs the {HEADER_LENGTH} header "
                    "(the JSON object's length in bytes)")
        else:
            hint = "send a JSON object with an 'inputs' list"
        raise BadRequestError(message, hint, err.param) from None


def _shape(name: str, raw: Any) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(type(d) is int and d >= 0 for d in raw):
        _bad(f"input {name!r}: 'shape' must be a list of non-negative integers, got {raw!r}")
    return tuple(raw)


def _dtype(name: str, datatype: Any) -> np.dtype[Any]:
    if datatype == "BF16":
        _bad(f"input {name!r}: datatype BF16 is not supported: no runtime here takes bfloat16",
             "send FP32 or FP16 (the model's declared datatype: GET /v2/models/NAME)")
    dtype = V2_TO_NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None:
        _bad(f"input {name!r}: unknown datatype {datatype!r}", f"one of {', '.join(V2_TO_NUMPY)}")
    return dtype


def bytes_elements(name: str, data: memoryview, count: int) -> np.ndarray:
    """BYTES raw data (each element: 4-byte little-endian length, then the bytes) -> a flat
    object array of ``count`` bytes objects."""
    pos, end = 0, len(data)
    if count * _LENGTH.size > end:  # before allocating: the shape is the client's to choose
        _bad(f"input {name!r}: shape needs {count} BYTES element(s), at least "
             f"{count * _LENGTH.size} bytes, but {SIZE} is {end}",
             "each BYTES element is a 4-byte little-endian length and then its bytes")
    out = np.empty(count, dtype=object)
    for i in range(count):
        if end - pos < _LENGTH.size:
            _bad(f"input {name!r}: {SIZE} holds {i} BYTES element(s), shape needs {count}",
                 "each BYTES element is a 4-byte little-endian length and then its bytes")
        (n,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if n > end - pos:
            _bad(f"input {name!r}: BYTES element {i} says {n} bytes but {SIZE} leaves "
                 f"{end - pos}", "each BYTES element is a 4-byte little-endian length and "
                 "then its bytes")
        out[i] = bytes(data[pos:pos + n])
        pos += n
    if pos != end:
        _bad(f"input {name!r}: {SIZE} is {end} but its {count} BYTES element(s) take {pos}",
             "the shape must count every element, and binary_data_size every byte")
    return out


def tensor_from_bytes(name: str, datatype: Any, shape: tuple[int, ...],
                      data: memoryview) -> np.ndarray:
    """One input's raw bytes -> an array of the declared datatype and shape (a view of
    ``data`` for every numeric datatype)."""
    dtype = _dtype(name, datatype)
    count = math.prod(shape)
    if datatype == "BYTES":
        return bytes_elements(name, data, count).reshape(shape)
    wire = dtype.newbyteorder("<")
    needed = count * wire.itemsize
    if len(data) != needed:
        _bad(f"input {name!r}: {SIZE} is {len(data)} but shape {list(shape)} of {datatype} "
             f"needs {needed} bytes", f"{datatype} takes {wire.itemsize} byte(s) per element")
    if datatype == "BOOL":
        raw = np.frombuffer(data, dtype=np.uint8)
        if raw.size and int(raw.max()) > 1:
            _bad(f"input {name!r}: BOOL bytes must be 0 or 1", "one byte per element: 0 or 1")
    arr = np.frombuffer(data, dtype=wire)
    if not wire.isnative:  # a big-endian host: the only case that copies
        arr = arr.astype(dtype)
    return arr.reshape(shape)


def _parameters(owner: str, raw: Any) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _bad(f"{owner}: 'parameters' must be a JSON object")
    return raw


def _refuse(owner: str, params: Mapping[str, Any], names: Sequence[str]) -> None:
    for key in names:
        if key in params:
            _bad(f"{owner}: parameter {key!r} is not supported by this server",
                 "send tensors in the request body (JSON or binary data); "
                 "see GET /v2 for the extensions it implements")


class _Inputs:
    """Decodes the inputs in order, each binary one from the next bytes after the JSON."""

    def __init__(self, binary: memoryview) -> None:
        self._binary = binary
        self._offset = 0

    def __call__(self, raw: Any) -> tuple[str, np.ndarray]:
        if not isinstance(raw, dict):
            return codec.decode_tensor(raw)  # says what is wrong with it
        name = raw.get("name")
        owner = f"input {name!r}"
        params = _parameters(owner, raw.get("parameters"))
        _refuse(owner, params, _UNSUPPORTED_INPUT)
        if raw.get("datatype") == "BF16":
            _dtype(str(name), "BF16")  # says why not
        if SIZE not in params:
            return codec.decode_tensor(raw)
        if not isinstance(name, str) or not name:
            _bad("an input has no 'name'")
        size = params[SIZE]
        if type(size) is not int or size < 0:
            _bad(f"{owner}: parameters.{SIZE} must be a non-negative integer, got {size!r}")
        if "data" in raw:
            _bad(f"{owner}: has both 'data' and parameters.{SIZE}",
                 "send the tensor either as JSON 'data' or as binary data, not both")
        shape = _shape(name, raw.get("shape"))
        left = len(self._binary) - self._offset
        if size > left:
            _bad(f"{owner}: {SIZE} is {size} but the body has {left} byte(s) left for it "
                 "(truncated body?)",
                 f"binary inputs follow the JSON ({HEADER_LENGTH} bytes) in input order")
        chunk = self._binary[self._offset:self._offset + size]
        self._offset += size
        return name, tensor_from_bytes(name, raw.get("datatype"), shape, chunk)

    def finish(self) -> None:
        extra = len(self._binary) - self._offset
        if extra:
            _bad(f"the body has {extra} byte(s) after the JSON and the inputs' {SIZE} that "
                 "no input claims",
                 f"{HEADER_LENGTH} plus every input's {SIZE} must add up to the body's length")


def _deadline(params: Mapping[str, Any]) -> float | None:
    """Triton's request parameters: ``timeout`` (microseconds; 0 = none) is honoured,
    priorities and sequences are refused (one queue in arrival order, stateless models)."""
    priority = params.get("priority", 0)
    if priority not in (0, None):
        _bad(f"parameters.priority {priority!r} is not supported: requests are served in "
             "arrival order", "leave priority out (or 0)")
    sequence = params.get("sequence_id", 0)
    if sequence not in (0, "", None):
        _bad("parameters.sequence_id is not supported: the models here are stateless",
             "send each request on its own, without sequence_id")
    timeout = params.get("timeout")
    if timeout is None:
        return None
    if type(timeout) is not int or timeout < 0:
        _bad(f"parameters.timeout must be a non-negative integer (microseconds), "
             f"got {timeout!r}")
    return timeout / 1e6 if timeout else None


def _output_choice(doc: Mapping[str, Any]) -> tuple[bool, dict[str, bool]]:
    request_params = _parameters("request", doc.get("parameters"))
    default = request_params.get(REQUEST_FLAG, False)
    if not isinstance(default, bool):
        _bad(f"parameters.{REQUEST_FLAG} must be true or false, got {default!r}")
    chosen: dict[str, bool] = {}
    raw_outputs = doc.get("outputs")
    if isinstance(raw_outputs, list):  # codec checks the list's shape itself
        for raw in raw_outputs:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                continue
            owner = f"output {raw['name']!r}"
            params = _parameters(owner, raw.get("parameters"))
            _refuse(owner, params, _UNSUPPORTED_OUTPUT)
            if OUTPUT_FLAG in params:
                flag = params[OUTPUT_FLAG]
                if not isinstance(flag, bool):
                    _bad(f"{owner}: parameters.{OUTPUT_FLAG} must be true or false, "
                         f"got {flag!r}")
                chosen[raw["name"]] = flag
    return default, chosen


def decode_request(body: bytes, header: str | None) -> WireRequest:
    """A v2 request body (JSON, or JSON and raw tensors when ``header``, the value of
    Inference-Header-Content-Length, is given) -> its inputs and output choices."""
    length = header_length(header, len(body))
    view = memoryview(body)
    head = body if length is None else bytes(view[:length])
    doc = _parse_header(head, length is not None)
    inputs = _Inputs(view[len(head):])
    request = codec.decode_request(doc, inputs)
    inputs.finish()
    default, chosen = _output_choice(doc)
    request = replace(request, timeout_s=_deadline(request.parameters))
    return WireRequest(request, default, chosen)


# --- responses ---------------------------------------------------------------------------

def bytes_payload(arr: np.ndarray) -> bytes:
    """A BYTES tensor (bytes or str elements) as raw data: length-prefixed elements."""
    parts: list[bytes] = []
    for value in arr.ravel().tolist():
        b = value if isinstance(value, bytes) else str(value).encode()
        parts.append(_LENGTH.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


def raw_payload(arr: np.ndarray) -> tuple[str, bytes | memoryview]:
    """An output as (datatype, its raw little-endian bytes: a view where the array is
    contiguous little-endian already)."""
    if arr.dtype.kind in "OSU":
        return "BYTES", bytes_payload(arr)
    datatype = v2_of(np.empty(0, arr.dtype.newbyteorder("=")))
    wire = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    return datatype, wire.reshape(-1).view(np.uint8).data


def encode_response(model: str, version: str, request_id: str | None,
                    outputs: Mapping[str, np.ndarray], names: Sequence[str],
                    binary: Callable[[str], bool]) -> WireResponse:
    """The response for ``names``: JSON when no output is binary (the fast JSON path),
    else the JSON object with ``binary_data_size`` on each binary output, then their bytes."""
    if not any(binary(n) for n in names):
        return WireResponse(codec.response_bytes(model, version, request_id, outputs, names),
                            JSON_CONTENT_TYPE)
    doc: dict[str, Any] = {"model_name": model, "model_version": version}
    if request_id is not None:
        doc["id"] = request_id
    described: list[dict[str, Any]] = []
    payloads: list[bytes | memoryview] = []
    for name in names:
        arr = outputs[name]
        if not binary(name):
            described.append(codec.encode_tensor(name, arr))
            continue
        datatype, payload = raw_payload(arr)
        described.append({"name": name, "datatype": datatype, "shape": list(arr.shape),
                          "parameters": {SIZE: len(payload)}})
        payloads.append(payload)
    doc["outputs"] = described
    head = codec.dumps(doc)
    return WireResponse(b"".join([head, *payloads]), BINARY_CONTENT_TYPE, len(head))
