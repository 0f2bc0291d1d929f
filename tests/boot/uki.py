"""Read one section of a PE file (the unified kernel image) without any PE library."""

from __future__ import annotations

import struct
from pathlib import Path


def section(path: Path, name: str) -> bytes:
    data = path.read_bytes()
    (pe,) = struct.unpack_from("<I", data, 0x3C)
    if data[pe:pe + 4] != b"PE\0\0":
        raise ValueError(f"{path} is not a PE file")
    count, = struct.unpack_from("<H", data, pe + 6)
    optional_size, = struct.unpack_from("<H", data, pe + 20)
    table = pe + 24 + optional_size
    for i in range(count):
        entry = table + 40 * i
        raw_name = data[entry:entry + 8].rstrip(b"\0").decode()
        virtual_size, _, raw_size, raw_offset = struct.unpack_from("<IIII", data, entry + 8)
        if raw_name == name:
            return data[raw_offset:raw_offset + min(virtual_size, raw_size)]
    raise KeyError(f"{path} has no {name} section")
