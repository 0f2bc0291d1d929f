"""Early decryption (``llmos.vault.prefetch``): the key and the packs opened in a thread,
largest first, taken by whoever loads the model; a pack not begun is left to the taker,
a failure to the supervisor (which reports it), and what nobody took is freed."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from llmos.config import ModelConfig
from llmos.errors import KeyReleaseError
from llmos.hw.memory import MemoryPool
from llmos.pack import container
from llmos.vault.kek import Kek
from llmos.vault.prefetch import Prefetch
from llmos.vault.sealed import seal

from .packs import random_pack


@dataclass
class Provider:
    kek: Kek | None
    gate: threading.Event | None = None  # release() waits for it
    name: str = "test"

    def release(self) -> Kek:
        if self.gate is not None:
            self.gate.wait(5)
        if self.kek is None:
            raise KeyReleaseError("no key here", "none")
        return self.kek

    def describe(self) -> dict[str, object]:
        return {}


def _sealed(tmp_path: Path, kek: Kek, name: str, size: int) -> tuple[ModelConfig, bytes]:
    pack = random_pack(size, seed=size, name=name)
    path = tmp_path / f"{name}.sealed"
    path.write_bytes(seal(pack.manifest, pack.compressed, kek))
    plain = bytes(container.decompress_into([pack.compressed], pack.manifest))
    return ModelConfig(name, path), plain


def _owners(pool: MemoryPool) -> set[str]:
    return {u.owner for u in pool.usage()}


def test_the_key_and_every_pack_are_taken_as_decrypted(tmp_path: Path, kek: Kek) -> None:
    small, small_plain = _sealed(tmp_path, kek, "small", 2000)
    big, big_plain = _sealed(tmp_path, kek, "big", 200_000)
    pool = MemoryPool(pin=False)
    prefetch = Prefetch(Provider(kek), [small, big], pool).start()
    got = prefetch.key()
    assert got is not None and got[1] is kek
    prefetch._thread.join(5)
    assert bytes(prefetch.take("big") or b"") == big_plain
    assert bytes(prefetch.take("small") or b"") == small_plain
    assert _owners(pool) == {"small", "big"}  # the takers' buffers now
    assert prefetch.take("big") is None  # taken once
    prefetch.discard()
    assert _owners(pool) == {"small", "big"}  # taken payloads stay with their models
    pool.close()


def test_a_pack_being_decrypted_is_waited_for(tmp_path: Path, kek: Kek) -> None:
    big, big_plain = _sealed(tmp_path, kek, "big", 200_000)
    pool = MemoryPool(pin=False)
    opening, go_on = threading.Event(), threading.Event()
    alloc = pool.alloc

    def slow(owner: str, nbytes: int) -> memoryview:
        opening.set()
        go_on.wait(5)
        return alloc(owner, nbytes)

    pool.alloc = slow  # type: ignore[method-assign]
    prefetch = Prefetch(Provider(kek), [big], pool).start()
    assert opening.wait(5)
    got: list[memoryview | None] = []
    taker = threading.Thread(target=lambda: got.append(prefetch.take("big")))
    taker.start()
    taker.join(0.2)
    assert taker.is_alive()  # waiting for the thread, not decrypting a second time
    go_on.set()
    taker.join(5)
    assert got and bytes(got[0] or b"") == big_plain
    pool.close()


def test_a_pack_not_begun_is_left_to_the_taker(tmp_path: Path, kek: Kek) -> None:
    gate = threading.Event()
    small, _ = _sealed(tmp_path, kek, "small", 2000)
    pool = MemoryPool(pin=False)
    prefetch = Prefetch(Provider(kek, gate), [small], pool).start()
    assert prefetch.take("small") is None  # the thread is still releasing the key
    gate.set()
    assert prefetch.key() is not None
    prefetch.discard()
    assert _owners(pool) == set()  # the thread never decrypted it
    pool.close()


def test_failures_are_left_to_the_supervisor(tmp_path: Path, kek: Kek) -> None:
    small, _ = _sealed(tmp_path, kek, "small", 2000)
    prefetch = Prefetch(Provider(None), [small], None).start()
    assert prefetch.key() is None  # the supervisor releases the key again
    assert prefetch.take("small") is None

    damaged = tmp_path / "damaged.sealed"
    blob = bytearray(small.pack.read_bytes())
    blob[-100] ^= 1
    damaged.write_bytes(bytes(blob))
    pool = MemoryPool(pin=False)
    prefetch = Prefetch(Provider(kek), [ModelConfig("damaged", damaged)], pool).start()
    assert prefetch.take("damaged") is None  # opened again, and refused, by the supervisor
    assert _owners(pool) == set()  # its buffer was freed (and wiped)
    pool.close()


def test_what_nobody_took_is_freed(tmp_path: Path, kek: Kek) -> None:
    small, _ = _sealed(tmp_path, kek, "small", 2000)
    pool = MemoryPool(pin=False)
    prefetch = Prefetch(Provider(kek), [small], pool).start()
    assert prefetch.key() is not None
    prefetch._thread.join(5)  # the pack is decrypted, and nobody takes it
    assert _owners(pool) == {"small"}
    prefetch.discard()
    assert _owners(pool) == set()
    assert prefetch.take("small") is None


def test_largest_first(tmp_path: Path, kek: Kek) -> None:
    configs = [_sealed(tmp_path, kek, n, size)[0]
               for n, size in (("a", 1000), ("b", 90_000), ("c", 9000))]
    seen: list[str] = []
    pool = MemoryPool(pin=False)
    alloc = pool.alloc

    def recording(owner: str, nbytes: int) -> memoryview:
        seen.append(owner)
        return alloc(owner, nbytes)

    pool.alloc = recording  # type: ignore[method-assign]
    prefetch = Prefetch(Provider(kek), configs, pool).start()
    prefetch._thread.join(5)
    assert seen == ["b", "c", "a"]
    prefetch.discard()
    pool.close()
