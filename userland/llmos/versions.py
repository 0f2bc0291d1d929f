"""A model's entry in the registry: its serving version, and the versions beside it.

A model name has one serving version, except during an update: then the new version loads
beside the serving one (*incoming*: known, not ready), takes over once warm, and the old
one (*retiring*) finishes the requests it holds before it is unloaded. ``ModelEntry``
routes a request to a version (``None``: the serving one) and says why a version cannot
serve; ``Leases`` counts the requests each loaded version holds, so that the old version
is closed only once none is left (``drained``). Only the registry changes an entry.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmos.config import ModelConfig
from llmos.errors import NotFoundError, NotReadyError
from llmos.pack.manifest import Manifest
from llmos.serving.backend import PLATFORMS, Served
from llmos.state import ModelState, ModelStatus

#: How often ``drained`` looks whether the old version is idle.
POLL_S = 0.01


def pack_fields(manifest: Manifest) -> dict[str, Any]:
    """The status fields a pack's manifest sets: version, kind, platform, sizes."""
    return {"version": manifest.version, "kind": manifest.kind,
            "platform": PLATFORMS.get(manifest.runtime, manifest.runtime),
            "size_packed": manifest.size_packed, "size_plain": manifest.size_plain}


@dataclass
class Version:
    """A version in memory that is not (or no longer) the serving one."""

    status: ModelStatus  # as it was when it stopped being the serving version
    manifest: Manifest
    served: Served
    payload: memoryview | None  # the plaintext, kept alive while it serves
    owner: str  # whose buffers they are in the memory pool


@dataclass
class ModelEntry:
    """One model's mutable slot: the serving version's parts, and the others."""

    config: ModelConfig
    status: ModelStatus
    manifest: Manifest | None = None
    served: Served | None = None
    payload: memoryview | None = None  # the plaintext, kept alive while the model serves
    owner: str = ""  # the serving version's memory-pool owner ("": the model's name)
    parked: bool = False  # unloaded by an operator: placements are recorded, not loaded
    incoming: Manifest | None = None  # a new version loading beside the serving one
    retiring: Version | None = None  # the replaced version, finishing its requests
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def memory_owner(self) -> str:
        return self.owner or self.config.name

    def settled_for_good(self, starting: bool, key_released: bool | None) -> bool:
        """Its pack is unreadable, or start-up already made it unavailable for want of the
        key: a new placement changes only where it would run."""
        return (starting and self.manifest is None
                and self.status.state is ModelState.FAILED) or \
            (key_released is False and self.status.error_type == "KeyReleaseError")

    def versions(self) -> tuple[str, ...]:
        """The versions known now: the serving one, then one loading or retiring."""
        found = [self.status.version] if self.status.version else []
        found += [m.version for m in (self.incoming,) if m is not None]
        if self.retiring is not None:
            found.append(self.retiring.status.version)
        return tuple(found)

    def _other(self, version: str | None) -> Version | Manifest | None:
        """The retiring version or the incoming manifest ``version`` names; None: the
        serving one; NotFoundError for a version this model does not have now."""
        if version is None or version == self.status.version:
            return None
        if self.retiring is not None and version == self.retiring.status.version:
            return self.retiring
        if self.incoming is not None and version == self.incoming.version:
            return self.incoming
        have = ", ".join(self.versions()) or "unknown until the pack is read"
        raise NotFoundError(f"model {self.name!r} has no version {version!r}",
                            f"its versions now: {have}")

    def check_version(self, version: str | None) -> None:
        self._other(version)

    def version_status(self, version: str | None) -> ModelStatus:
        other = self._other(version)
        if isinstance(other, Version):
            return other.status
        if isinstance(other, Manifest):  # loading beside the serving version
            return ModelStatus(self.name, ModelState.LOADING, version=other.version,
                               kind=other.kind, since=self.status.since)
        return self.status

    def known_manifest(self, version: str | None) -> Manifest:
        other = self._other(version)
        if isinstance(other, Version):
            return other.manifest
        if isinstance(other, Manifest):
            return other
        if self.manifest is None:
            raise NotReadyError(f"model {self.name!r}: its pack could not be read: "
                                f"{self.status.reason or self.status.state.value}",
                                "see /health for the reason")
        return self.manifest

    def serving(self, version: str | None) -> Served:
        other = self._other(version)
        if isinstance(other, Version):
            return other.served
        if isinstance(other, Manifest):
            raise NotReadyError(
                f"model {self.name!r} version {other.version!r} is loading beside version "
                f"{self.status.version!r}",
                f"retry once /v2/models/{self.name}/versions/{other.version}/ready answers "
                f"200, or leave the version out")
        if self.served is None:
            st, name = self.status, self.name
            detail = f": {st.reason}" if st.reason else ""
            raise NotReadyError(f"model {name!r} is {st.state.value}{detail}",
                                f"retry once /v2/models/{name}/ready answers 200"
                                if st.state is ModelState.LOADING else "see /health")
        return self.served


@runtime_checkable
class _Generating(Protocol):
    """A served model whose work outlives the request that began it (a causal LM's
    generations, streamed after the data plane returned)."""

    @property
    def busy(self) -> bool: ...


class Leases:
    """How many requests hold each loaded model (by identity): the data plane holds one
    from the moment it picks a version until its work was handed over or answered."""

    def __init__(self) -> None:
        self._held: collections.Counter[int] = collections.Counter()

    @contextlib.contextmanager
    def hold(self, served: Served) -> Iterator[None]:
        key = id(served)
        self._held[key] += 1
        try:
            yield
        finally:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]

    def held(self, served: Served) -> int:
        return self._held.get(id(served), 0)

    def idle(self, served: Served) -> bool:
        """No request holds it and it has no work of its own left."""
        return self.held(served) == 0 and not (isinstance(served, _Generating)
                                               and served.busy)

    async def drained(self, served: Served, timeout_s: float) -> bool:
        """Wait until ``served`` is idle (True) or ``timeout_s`` has passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self.idle(served):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)
        return True
