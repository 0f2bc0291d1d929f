"""DirectReader: exact bytes from any offset, in any read sizes, with O_DIRECT or without."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from llmos.vault.direct_read import ALIGN, O_DIRECT, RWF_NOWAIT, DirectReader

BLOCK = 2 * ALIGN
SIZE = 5 * BLOCK + 123  # not a multiple of the alignment: the last read is short


def _read(reader: DirectReader, n: int) -> bytes:
    """The next ``n`` bytes through ``readinto`` (fewer only at the end of the file)."""
    out = bytearray(n)
    return bytes(out[:reader.readinto(memoryview(out))])


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def on_disk(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("direct", [True, False])
@pytest.mark.parametrize("offset", [0, 1, ALIGN - 1, ALIGN, BLOCK + 17, SIZE - 5])
def test_reads_return_the_file_from_offset_in_any_sizes(on_disk: Path, data: bytes,
                                                        direct: bool, offset: int) -> None:
    sizes = [1, ALIGN - 1, BLOCK, 3 * BLOCK + 5, 0, 7]
    pos, got = offset, []
    with DirectReader(on_disk, offset, direct=direct, block=BLOCK) as reader:
        for n in sizes:
            piece = _read(reader, n)
            assert bytes(piece) == data[pos:pos + n]
            pos += len(piece)
            got.append(piece)
        rest = _read(reader, SIZE)
        assert bytes(rest) == data[pos:]
        assert _read(reader, 10) == b""  # after the end: nothing, and no error
    assert b"".join(got) + rest == data[offset:]


def test_uses_o_direct_where_the_file_system_has_it(on_disk: Path, data: bytes) -> None:
    """Past the page cache wherever the file opens with O_DIRECT (tmp_path: a disk here)."""
    try:
        os.close(os.open(on_disk, os.O_RDONLY | O_DIRECT))
        supported = O_DIRECT != 0
    except OSError:
        supported = False
    with DirectReader(on_disk, 5, block=BLOCK) as reader:
        assert bytes(_read(reader, 100)) == data[5:105]
        assert reader.direct is supported


def test_falls_back_to_the_page_cache_where_open_refuses_o_direct(
        on_disk: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def no_direct(path: Path, flags: int, *args: int) -> int:
        if flags & O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    with DirectReader(on_disk, 3, block=BLOCK) as reader:
        assert reader.direct is False
        assert bytes(_read(reader, SIZE)) == data[3:]


def test_falls_back_to_the_page_cache_where_a_direct_read_is_refused(
        on_disk: Path, data: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems open with O_DIRECT and refuse the read (EINVAL)."""
    real_preadv = os.preadv
    refused = []

    def picky(fd: int, buffers: list[memoryview], offset: int, *flags: int) -> int:
        if flags:  # the non-blocking read from the page cache: say nothing is cached
            raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")
        if fcntl.fcntl(fd, fcntl.F_GETFL) & O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", picky)
    with DirectReader(on_disk, ALIGN + 9, block=BLOCK) as reader:
        assert bytes(_read(reader, SIZE)) == data[ALIGN + 9:]
        assert reader.direct is False
    assert refused == [ALIGN]


def test_other_open_errors_are_not_hidden(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        DirectReader(tmp_path / "missing")


def test_offset_past_the_end_reads_nothing(on_disk: Path) -> None:
    with DirectReader(on_disk, SIZE + ALIGN * 3, block=BLOCK) as reader:
        assert _read(reader, 5) == b""


def test_block_must_be_aligned(on_disk: Path) -> None:
    with pytest.raises(ValueError, match="multiple of 4096"):
        DirectReader(on_disk, block=ALIGN + 1)


def _direct_supported(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | O_DIRECT))
    except OSError:
        return False
    return O_DIRECT != 0 and RWF_NOWAIT != 0


def test_blocks_in_the_page_cache_are_read_from_there(on_disk: Path, data: bytes) -> None:
    if not _direct_supported(on_disk):
        pytest.skip("no O_DIRECT or RWF_NOWAIT on this file system")
    with DirectReader(on_disk, 7, block=BLOCK) as reader:  # just written: cached
        assert bytes(_read(reader, SIZE)) == data[7:]
        assert reader.direct and reader.cached_bytes == SIZE - 7


def test_a_file_cached_in_part_is_read_from_the_cache_then_past_it(
        on_disk: Path, data: bytes) -> None:
    """The cached head comes from the page cache, the rest from the disk, byte-exact
    across the switch (at an unaligned position, inside the caller's read)."""
    if not _direct_supported(on_disk):
        pytest.skip("no O_DIRECT or RWF_NOWAIT on this file system")
    fd = os.open(on_disk, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.pread(fd, SIZE, 0)
        os.posix_fadvise(fd, 2 * BLOCK, 0, os.POSIX_FADV_DONTNEED)  # the first two stay
    finally:
        os.close(fd)
    with DirectReader(on_disk, 7, block=BLOCK) as reader:
        head = _read(reader, BLOCK + 5)
        rest = _read(reader, SIZE)
        assert bytes(head) + bytes(rest) == data[7:]
        assert reader.direct and 0 < reader.cached_bytes < SIZE - 7


def test_blocks_not_in_the_page_cache_are_read_past_it(on_disk: Path, data: bytes) -> None:
    if not _direct_supported(on_disk):
        pytest.skip("no O_DIRECT or RWF_NOWAIT on this file system")
    fd = os.open(on_disk, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # out of the page cache
    finally:
        os.close(fd)
    with DirectReader(on_disk, 7, block=BLOCK) as reader:
        assert bytes(_read(reader, SIZE)) == data[7:]
        assert reader.direct and reader.cached_bytes == 0
