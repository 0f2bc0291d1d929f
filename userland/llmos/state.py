"""What the supervisor knows about itself, as plain immutable data (no I/O).

``ModelStatus`` is one model's state (and where it runs); ``KeyStatus`` says whether the
fleet key was released; ``Health`` is derived from both by the pure ``assess`` function
that /health, /v2/health/ready and the systemd STATUS= line all read. Warnings (a model on
its CPU fallback, weights not pinned) are listed among the reasons but never make the
server unready.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class ModelState(enum.Enum):
    LOADING = "LOADING"  # decrypting, decompressing, creating sessions, warming up
    READY = "READY"  # serving
    FAILED = "FAILED"  # load failed for a reason that waiting will not fix
    UNLOADED = "UNLOADED"  # configured but not loaded (an admin unloaded it)
    UNAVAILABLE = "UNAVAILABLE"  # cannot be loaded now (no fleet key, device gone)


#: States from which the start-up pass counts a model as settled.
SETTLED = frozenset({ModelState.READY, ModelState.FAILED, ModelState.UNLOADED,
                     ModelState.UNAVAILABLE})


@dataclass(frozen=True)
class ModelStatus:
    """One model as the registry sees it."""

    name: str
    state: ModelState
    version: str = ""
    kind: str = ""
    platform: str = ""
    reason: str = ""  # why FAILED / UNAVAILABLE (message and hint)
    error_type: str = ""  # the LlmosError subclass behind a failure
    load_time_s: float | None = None  # key-to-warm time of the last successful load
    size_packed: int = 0  # compressed payload bytes (from the manifest)
    size_plain: int = 0  # plaintext bytes held in memory once loaded
    since: float = 0.0  # time.time() of the last state change
    device: str = ""  # where it runs or would run ("cpu", "cuda:0"); "" when not placed
    placement: str = ""  # "placed", "fallback" (CPU instead of its GPU), "unavailable"
    memory_bytes: int = 0  # weight memory held now (pinned pool bytes while loaded)

    def to(self, state: ModelState, *, now: float, **changes: Any) -> ModelStatus:
        """The same model in another state; reason and error type reset unless given."""
        changes.setdefault("reason", "")
        changes.setdefault("error_type", "")
        return replace(self, state=state, since=now, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state.value,
            "kind": self.kind,
            "platform": self.platform,
            "reason": self.reason,
            "error_type": self.error_type,
            "load_time_s": self.load_time_s,
            "size_packed": self.size_packed,
            "size_plain": self.size_plain,
            "since": self.since,
            "device": self.device,
            "placement": self.placement,
            "memory_bytes": self.memory_bytes,
        }


@dataclass(frozen=True)
class KeyStatus:
    """Whether the fleet key (key-encryption key) was released, and by which provider."""

    provider: str
    released: bool | None = None  # None: not tried yet
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class Overall(enum.Enum):
    STARTING = "starting"  # key release or first loads still running
    READY = "ready"  # every configured model serves
    DEGRADED = "degraded"  # some models serve, some failed / are unloaded
    UNAVAILABLE = "unavailable"  # nothing can serve (no key, every model failed)


@dataclass(frozen=True)
class Health:
    overall: Overall
    reasons: tuple[str, ...]
    models: tuple[ModelStatus, ...]
    key: KeyStatus
    settled: bool  # the start-up pass is over (what systemd's READY=1 means)

    @property
    def ready(self) -> bool:
        """Whether to answer 200 to readiness probes: something serves, nothing is pending."""
        return self.overall in (Overall.READY, Overall.DEGRADED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.overall.value,
            "ready": self.ready,
            "reasons": list(self.reasons),
            "key": {"provider": self.key.provider, "released": self.key.released,
                    "reason": self.key.reason, **dict(self.key.details)},
            "models": {m.name: m.to_dict() for m in self.models},
        }

    def summary(self) -> str:
        """One line for systemd's STATUS= and the log."""
        ready = sum(1 for m in self.models if m.state is ModelState.READY)
        head = f"{self.overall.value}: {ready}/{len(self.models)} models serving"
        return head + ("; " + "; ".join(self.reasons) if self.reasons else "")


def assess(key: KeyStatus, models: Iterable[ModelStatus], starting: bool,
           warnings: Iterable[str] = ()) -> Health:
    """Derive the server's health from the key and every model's status.

    ``starting`` is True until the supervisor's start-up pass has finished. ``warnings``
    (memory fallbacks, say) join the reasons, after the models', and change nothing else.
    """
    ms = tuple(models)
    reasons: list[str] = []
    if key.released is False:
        reasons.append(f"fleet key unavailable ({key.provider}): {key.reason}")
    for m in ms:
        if m.state is ModelState.FAILED:
            reasons.append(f"model {m.name} failed: {m.reason}")
        elif m.state is ModelState.UNAVAILABLE and key.released is not False:
            reasons.append(f"model {m.name} unavailable: {m.reason}")
        elif m.state is ModelState.UNLOADED:
            reasons.append(f"model {m.name} is unloaded")
        elif m.state is ModelState.READY and m.placement == "fallback":
            reasons.append(f"warning: model {m.name} runs on {m.device}: {m.reason}")
    reasons.extend(f"warning: {w}" for w in warnings)
    loading = [m.name for m in ms if m.state is ModelState.LOADING]
    if loading:
        reasons.insert(0, "loading: " + ", ".join(loading))
    elif starting and key.released is None:
        reasons.insert(0, "releasing the fleet key")
    serving = sum(1 for m in ms if m.state is ModelState.READY)
    if key.released is False:
        overall = Overall.UNAVAILABLE
    elif starting:
        overall = Overall.STARTING
    elif serving == len(ms):
        overall = Overall.READY
    elif serving:
        overall = Overall.DEGRADED
    elif loading:
        overall = Overall.STARTING
    else:
        overall = Overall.UNAVAILABLE
    return Health(overall, tuple(reasons), ms, key, settled=not starting)
