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


# --- the model state machine (h11's _state.py is the model: rules first, then the table) ---
#
# A model is born LOADING (configured at start) or UNLOADED (added at run time: an admin
# upload, loaded by the operator's next action). From then on its state changes only by
# ``transition``, for one of the causes below; the table says, for each cause, the states
# it may happen in and the state it leads to. Anything else is a bug and raises.
#
# - Loading begins from any state where nothing serves; a READY model is first released
#   (MOVE) when the placement puts it elsewhere.
# - Only LOADING ends in READY (LOADED), FAILED (LOAD_FAILED) or, when the fleet key could
#   not be released, UNAVAILABLE (KEY_UNAVAILABLE).
# - A model whose device is gone (DRAIN) or that has no device (NO_DEVICE) is UNAVAILABLE;
#   one the operator unloads (UNLOAD) or keeps parked while it is placed (PARKED), UNLOADED.
# - A READY model stays READY when a new version of it takes over (UPDATED): the update's
#   own states are below (``UpdateState``), the model never stops serving for one.


class Cause(enum.Enum):
    """Why a model's state changes."""

    LOAD = "load"  # a load begins (start-up, the operator, a placement)
    MOVE = "move"  # the placement moves a serving model to another device
    LOADED = "loaded"  # decrypted, built and warmed up: it serves
    LOAD_FAILED = "load_failed"  # the pack or the runtime refused: waiting will not fix it
    KEY_UNAVAILABLE = "key_unavailable"  # no fleet key: no pack can be opened
    NO_DEVICE = "no_device"  # the placement has no device for it now
    DRAIN = "drain"  # its device went away while it served
    UNLOAD = "unload"  # the operator unloaded it (or the server stops)
    PARKED = "parked"  # placed while unloaded by the operator: it stays unloaded
    UPDATED = "updated"  # a new version, loaded and warm beside it, took over (see UPDATES)


_S = ModelState
_NOT_SERVING = frozenset({_S.LOADING, _S.FAILED, _S.UNLOADED, _S.UNAVAILABLE})
_ANY = frozenset(_S)

#: cause -> (the states it may happen in, the state it leads to).
TRANSITIONS: Mapping[Cause, tuple[frozenset[ModelState], ModelState]] = {
    Cause.LOAD: (_NOT_SERVING, _S.LOADING),
    Cause.MOVE: (frozenset({_S.READY}), _S.LOADING),
    Cause.LOADED: (frozenset({_S.LOADING}), _S.READY),
    Cause.LOAD_FAILED: (frozenset({_S.LOADING}), _S.FAILED),
    Cause.KEY_UNAVAILABLE: (_NOT_SERVING, _S.UNAVAILABLE),
    Cause.NO_DEVICE: (_ANY, _S.UNAVAILABLE),
    Cause.DRAIN: (frozenset({_S.READY}), _S.UNAVAILABLE),
    Cause.UNLOAD: (_ANY, _S.UNLOADED),
    Cause.PARKED: (_ANY, _S.UNLOADED),
    Cause.UPDATED: (frozenset({_S.READY}), _S.READY),
}


# --- model updates: a new version of a serving model, loaded beside it ----------------
#
# A new pack of a READY model (another version) is loaded and warmed up beside the serving
# version (LOADING) and takes over only then: from that moment new requests go to it, and
# the old version, still addressable by its version, finishes the requests it holds
# (DRAINING) before it is unloaded (DONE). A pack that does not load or warm up fails the
# update (FAILED, with the reason) and the old version serves on; a pack of the version
# already serving is refused (FAILED, nothing else changes). One update at a time: while
# one is under way another is refused without a trace here (the caller is told, 409).


class UpdateState(enum.Enum):
    LOADING = "LOADING"  # the new version loads and warms up; the old one serves
    DRAINING = "DRAINING"  # the new version serves; the old one finishes its requests
    DONE = "DONE"  # the old version is unloaded
    FAILED = "FAILED"  # refused, or did not load or warm up: the old version serves on


class UpdateCause(enum.Enum):
    BEGIN = "begin"  # a pack of another version arrived
    WARM = "warm"  # it loaded and warmed up: it takes over
    RETIRED = "retired"  # the old version finished its requests (or its time) and is unloaded
    FAILED = "failed"  # the new version did not load or warm up
    REFUSED = "refused"  # the pack cannot be an update of this model now


_U = UpdateState
_UPDATE_SETTLED = frozenset({_U.DONE, _U.FAILED})

#: update cause -> (the update states it may happen in, the state it leads to). ``None``
#: (no update yet) counts as settled.
UPDATES: Mapping[UpdateCause, tuple[frozenset[UpdateState], UpdateState]] = {
    UpdateCause.BEGIN: (_UPDATE_SETTLED, _U.LOADING),
    UpdateCause.WARM: (frozenset({_U.LOADING}), _U.DRAINING),
    UpdateCause.RETIRED: (frozenset({_U.DRAINING}), _U.DONE),
    UpdateCause.FAILED: (frozenset({_U.LOADING}), _U.FAILED),
    UpdateCause.REFUSED: (_UPDATE_SETTLED, _U.FAILED),
}


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: a bug in the registry, never a user error."""


def next_state(state: ModelState, cause: Cause) -> ModelState:
    """The state ``cause`` leads to from ``state``; IllegalTransition when not allowed."""
    sources, target = TRANSITIONS[cause]
    if state not in sources:
        raise IllegalTransition(f"a model cannot go from {state.value} by {cause.value} "
                                f"(allowed from {sorted(s.value for s in sources)})")
    return target


@dataclass(frozen=True)
class UpdateStatus:
    """The last update of a model: the version it brings, the one it replaces, how far."""

    state: UpdateState
    version: str  # the new version
    previous: str  # the version serving when it began
    reason: str = ""  # why FAILED; how DONE ended when the old version was cut short
    started: float = 0.0  # time.time() when the pack arrived
    since: float = 0.0  # time.time() of the last change
    load_time_s: float | None = None  # the new version's key-to-warm time

    @staticmethod
    def settled(update: UpdateStatus | None) -> bool:
        """Whether a new update may begin (none yet, or the last one is over)."""
        return update is None or update.state in _UPDATE_SETTLED

    @staticmethod
    def begin(last: UpdateStatus | None, cause: UpdateCause, *, version: str,
              previous: str, now: float, reason: str = "") -> UpdateStatus:
        """A new update after ``last`` (None: the model's first): BEGIN or REFUSED."""
        base = last if last is not None else UpdateStatus(_U.DONE, "", "")
        return base.to(cause, now=now, version=version, previous=previous, reason=reason,
                       started=now, load_time_s=None)

    def to(self, cause: UpdateCause, *, now: float, **changes: Any) -> UpdateStatus:
        """The same update after ``cause``; IllegalTransition if the table does not allow
        it."""
        sources, target = UPDATES[cause]
        if self.state not in sources:
            raise IllegalTransition(f"an update cannot go from {self.state.value} by "
                                    f"{cause.value}")
        return replace(self, state=target, since=now, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "version": self.version,
                "previous": self.previous, "reason": self.reason, "started": self.started,
                "since": self.since, "load_time_s": self.load_time_s}


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
    update: UpdateStatus | None = None  # the last update of this model, if any

    def to(self, cause: Cause, *, now: float, **changes: Any) -> ModelStatus:
        """The same model after ``cause`` (the table decides the state; IllegalTransition
        if it does not allow it); reason and error type reset unless given."""
        changes.setdefault("reason", "")
        changes.setdefault("error_type", "")
        return replace(self, state=next_state(self.state, cause), since=now, **changes)

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
            "update": None if self.update is None else self.update.to_dict(),
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
    if key.released:  # a key released on a boot that is not the protected one (boot_trust)
        reasons.extend(f"warning: fleet key not protected on this boot: {p}"
                       for p in key.details.get("problems", ()))
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
