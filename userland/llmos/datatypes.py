"""Open Inference Protocol v2 datatypes and their numpy equivalents (pure data)."""

from __future__ import annotations

import numpy as np

# v2 datatype name -> numpy dtype. BYTES is carried as numpy object arrays of bytes.
V2_TO_NUMPY: dict[str, np.dtype[np.generic]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

NUMPY_TO_V2: dict[np.dtype[np.generic], str] = {v: k for k, v in V2_TO_NUMPY.items()}

# ONNX tensor type strings as onnxruntime reports them -> v2 datatype.
ONNX_TO_V2: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


def v2_of(array: np.ndarray) -> str:
    """The v2 datatype name of a numpy array (object arrays are BYTES)."""
    try:
        return NUMPY_TO_V2[array.dtype]
    except KeyError:
        raise ValueError(f"no v2 datatype for numpy dtype {array.dtype}") from None
