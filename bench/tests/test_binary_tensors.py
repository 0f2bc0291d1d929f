"""bench.binary_tensors: its two bodies carry the same tensor, and its table has every row."""

from __future__ import annotations

import numpy as np

from bench import binary_tensors as b
from llmos.serving import binary_tensors as bt


def test_both_bodies_decode_to_the_same_tensor() -> None:
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    as_json, as_binary, header = b.bodies(x)
    np.testing.assert_array_equal(bt.decode_request(as_json, None).request.inputs["x"], x)
    np.testing.assert_array_equal(bt.decode_request(as_binary, header).request.inputs["x"], x)
    assert len(as_binary) < len(as_json)


def test_the_table_has_a_row_per_shape() -> None:
    rows = [b.measure((2, 8), repeat=2), b.measure((1, 4), repeat=2)]
    text = b.table(rows)
    assert text.count("\n") == 3 and "| 2x8 |" in text and "| 1x4 |" in text
    assert all(r.decode_binary_s > 0 and r.encode_json_s > 0 for r in rows)
