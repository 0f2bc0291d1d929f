"""A prefix cache of KV blocks: a prompt that starts like an earlier one is not recomputed.

Pure logic, no numpy calls and no runtime: what a block holds is opaque here (``Block``
has only a size). As in llama.cpp and vLLM, token ids are cut into blocks of
``block_tokens``; a block's key hashes its tokens *and its parent's key*, so one key
stands for every token from the start of the sequence to the end of its block, and two
prompts share a key only where they share the whole prefix. A sequence's last, partial
block is kept too, under a key of its exact tokens (``tail_key``): a prompt seen before
then restores to its last token, as llama.cpp's slot does, instead of to its last full
block.

Entries are kept in least-recently-used order within a byte budget. A lookup touches the
blocks it found from the last to the first, so a chain's first block is its most recent
one and eviction takes leaves before the prefixes that other chains share. A block that
is evicted while a sequence uses what it held harms nothing: the sequence has its own
copy in its cache slot (the store hands out immutable blocks, and restoring copies).
"""

from __future__ import annotations

import array
import collections
import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


class Block(Protocol):
    @property
    def nbytes(self) -> int: ...


B = TypeVar("B", bound=Block)


def block_keys(token_ids: Sequence[int], block_tokens: int) -> list[bytes]:
    """The chained key of every full block of ``token_ids``, first block first."""
    keys: list[bytes] = []
    parent = b""
    for end in range(block_tokens, len(token_ids) + 1, block_tokens):
        h = hashlib.blake2b(parent, digest_size=16)
        h.update(array.array("q", token_ids[end - block_tokens:end]).tobytes())
        parent = h.digest()
        keys.append(parent)
    return keys


def tail_key(parent: bytes, tokens: Sequence[int]) -> bytes:
    """The key of a partial block of ``tokens`` after the full block keyed ``parent``."""
    h = hashlib.blake2b(b"tail:" + parent, digest_size=16)
    h.update(array.array("q", tokens).tobytes())
    return h.digest()


def end_key(token_ids: Sequence[int]) -> bytes:
    """The key of what follows exactly ``token_ids`` (their last logits)."""
    h = hashlib.blake2b(b"end:", digest_size=16)
    h.update(array.array("q", token_ids).tobytes())
    return h.digest()


@dataclass
class PrefixStats:
    hits: int = 0  # lookups that reused at least one block
    misses: int = 0
    reused_tokens: int = 0
    evicted_blocks: int = 0


class PrefixCache(Generic[B]):
    """Blocks by chained key, least recently used evicted first, within ``budget_bytes``."""

    def __init__(self, block_tokens: int, budget_bytes: int) -> None:
        if block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {block_tokens}")
        self.block_tokens = block_tokens
        self.budget_bytes = budget_bytes
        self.bytes = 0
        self.stats = PrefixStats()
        self._blocks: collections.OrderedDict[bytes, B] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def lookup(self, token_ids: Sequence[int]) -> tuple[int, list[B]]:
        """The cached blocks of the longest prefix of ``token_ids``, in order (the last may
        be a partial one), and how many tokens they hold; counted as a hit or a miss."""
        size = self.block_tokens
        keys = block_keys(token_ids, size)
        found: list[B] = []
        for key in keys:
            block = self._blocks.get(key)
            if block is None:
                break
            found.append(block)
        used, tokens = keys[:len(found)], len(found) * size
        rest = token_ids[tokens:]  # a partial block may follow the last full one found
        for n in range(min(size - 1, len(rest)), 0, -1):
            key = tail_key(used[-1] if used else b"", rest[:n])
            block = self._blocks.get(key)
            if block is not None:
                found.append(block)
                used, tokens = [*used, key], tokens + n
                break
        self._touch(used)
        if found:
            self.stats.hits += 1
            self.stats.reused_tokens += tokens
        else:
            self.stats.misses += 1
        return tokens, found

    def insert(self, token_ids: Sequence[int], read: Callable[[int, int], B]) -> None:
        """Keep the blocks of ``token_ids`` not cached yet, ``read(start, stop)`` making
        each, then evict down to the budget. A block larger than the budget is not kept."""
        size = self.block_tokens
        keys = block_keys(token_ids, size)
        spans = [(key, i * size, (i + 1) * size) for i, key in enumerate(keys)]
        full = len(keys) * size
        if full < len(token_ids):
            spans.append((tail_key(keys[-1] if keys else b"", token_ids[full:]), full,
                           len(token_ids)))
        for key, start, stop in spans:
            self._add(key, functools.partial(read, start, stop))
        self._touch([key for key, _, _ in spans])
        self._evict()

    def put_end(self, token_ids: Sequence[int], value: B) -> None:
        """Keep ``value`` (a prompt's last logits) for ``end``; evict down to the budget."""
        key = end_key(token_ids)
        self._add(key, lambda: value)
        self._touch([key])
        self._evict()

    def end(self, token_ids: Sequence[int]) -> B | None:
        """What ``put_end`` kept for exactly ``token_ids``, if it is still here."""
        key = end_key(token_ids)
        value = self._blocks.get(key)
        if value is not None:
            self._touch([key])
        return value

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0

    def _add(self, key: bytes, make: Callable[[], B]) -> None:
        """Keep ``make()`` under ``key`` unless the key is here already (then ``make`` is
        not called) or the block is larger than the whole budget."""
        if key in self._blocks:
            return
        block = make()
        if block.nbytes <= self.budget_bytes:
            self._blocks[key] = block
            self.bytes += block.nbytes

    def _touch(self, chain: Sequence[bytes]) -> None:
        for key in reversed(chain):
            if key in self._blocks:
                self._blocks.move_to_end(key)

    def _evict(self) -> None:
        while self.bytes > self.budget_bytes and self._blocks:
            _, block = self._blocks.popitem(last=False)
            self.bytes -= block.nbytes
            self.stats.evicted_blocks += 1
