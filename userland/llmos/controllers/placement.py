"""Observed accelerators x desired models -> where each model runs (pure).

``plan()`` decides a ``Placement`` per configured model:

- ``device = "cpu"``: the CPU.
- ``device = "cuda:N"``: the CUDA GPU with ordinal N (PCI-bus order).
- ``device = "cuda"``: any CUDA GPU, the least loaded.
- ``device = "any"``: a CUDA GPU if there is one, else the CPU (what "any" asks for).

When the GPU a model asks for is absent, the model falls back to the CPU only if its
``cpu_fallback`` is set, and the placement says so (state FALLBACK, with the reason);
otherwise it is UNAVAILABLE, with the reason and what to do. A model already placed on a
GPU that is still present stays there (reconciling again never moves it needlessly).
``diff()`` turns two plans into the actions that take one to the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from llmos.config import ModelConfig
from llmos.hw.model import Accelerator, Inventory

CPU = "cpu"


class PlacementState(StrEnum):
    PLACED = "placed"  # runs where it asked
    FALLBACK = "fallback"  # runs on the CPU because its GPU is absent (cpu_fallback = true)
    UNAVAILABLE = "unavailable"  # cannot run now; ``reason`` says why


@dataclass(frozen=True)
class Placement:
    model: str
    state: PlacementState
    device: str | None  # "cpu", "cuda:N", or None when unavailable
    accelerator: str | None  # PCI address of the GPU, None on the CPU
    instances: int
    reason: str

    @property
    def runnable(self) -> bool:
        return self.state is not PlacementState.UNAVAILABLE

    def where(self) -> str | None:
        """What a move is measured by: the physical GPU (its ordinal may shift), or the CPU."""
        return self.accelerator or self.device


@dataclass(frozen=True)
class Plan:
    placements: tuple[Placement, ...] = ()

    def get(self, model: str) -> Placement | None:
        return next((p for p in self.placements if p.model == model), None)

    def by_model(self) -> dict[str, Placement]:
        return {p.model: p for p in self.placements}


def _describe(gpus: Sequence[Accelerator]) -> str:
    return ", ".join(f"{a.cuda_device} ({a.address})" for a in gpus) or "no CUDA GPU"


def _on_gpu(m: ModelConfig, gpu: Accelerator, why: str) -> Placement:
    return Placement(m.name, PlacementState.PLACED, gpu.cuda_device, gpu.address, m.instances,
                     why)


def _absent(m: ModelConfig, missing: str, gpus: Sequence[Accelerator]) -> Placement:
    found = _describe(gpus)
    if m.cpu_fallback:
        return Placement(m.name, PlacementState.FALLBACK, CPU, None, m.instances,
                         f"{missing} (found: {found}); running on the CPU because "
                         f"cpu_fallback = true")
    return Placement(m.name, PlacementState.UNAVAILABLE, None, None, m.instances,
                     f"{missing} (found: {found}); attach the GPU, change device, or set "
                     f"cpu_fallback = true to run on the CPU")


def _cuda_ordinal(device: str) -> int | None:
    prefix, _, index = device.partition(":")
    return int(index) if prefix == "cuda" and index.isdigit() else None


def _least_loaded(gpus: Sequence[Accelerator], load: dict[str, int]) -> Accelerator:
    return min(gpus, key=lambda a: (load.get(a.address, 0), a.cuda_index or 0))


def _kept(m: ModelConfig, gpus: Sequence[Accelerator], previous: Placement | None
          ) -> Accelerator | None:
    """The GPU a "cuda"/"any" model already runs on, if it is still there."""
    if previous is None or previous.accelerator is None or previous.instances != m.instances:
        return None
    return next((a for a in gpus if a.address == previous.accelerator), None)


def _place(m: ModelConfig, gpus: Sequence[Accelerator], load: dict[str, int],
           previous: Placement | None) -> Placement:
    device = m.device.strip().lower()
    if device == CPU:
        return Placement(m.name, PlacementState.PLACED, CPU, None, m.instances,
                         "configured for the CPU")
    if (ordinal := _cuda_ordinal(device)) is not None:
        gpu = next((a for a in gpus if a.cuda_index == ordinal), None)
        if gpu is None:
            return _absent(m, f"{device} is absent", gpus)
        return _on_gpu(m, gpu, f"configured for {device}")
    if device in ("cuda", "any"):
        if previous is not None and (gpu := _kept(m, gpus, previous)) is not None:
            if previous.device == gpu.cuda_device:
                return previous  # a fixed point: planning again changes nothing
            return _on_gpu(m, gpu, f"stays on its GPU, now {gpu.cuda_device} ({device})")
        if gpus:
            gpu = _least_loaded(gpus, load)
            return _on_gpu(m, gpu, f"least loaded CUDA GPU ({device})")
        if device == "any":
            return Placement(m.name, PlacementState.PLACED, CPU, None, m.instances,
                             "no CUDA GPU present; device = any runs on the CPU")
        return _absent(m, "no CUDA GPU is present", gpus)
    return Placement(m.name, PlacementState.UNAVAILABLE, None, None, m.instances,
                     f"unknown device {m.device!r}; use cpu, cuda, cuda:N or any")


def plan(inventory: Inventory, models: Iterable[ModelConfig], previous: Plan | None = None
         ) -> Plan:
    """Where each model runs now. Deterministic; idempotent for an unchanged inventory."""
    gpus = inventory.cuda()
    models = tuple(models)
    before = previous.by_model() if previous else {}
    load: dict[str, int] = {}
    decided: dict[str, Placement] = {}

    def floating(m: ModelConfig) -> bool:
        """A "cuda"/"any" model not yet on a GPU: it takes the least loaded one."""
        return (m.device.strip().lower() in ("cuda", "any")
                and _kept(m, gpus, before.get(m.name)) is None)

    # Models with a fixed place count first, so newcomers balance against them; then
    # the rest, in configuration order (sorted() is stable).
    for m in sorted(models, key=floating):
        p = _place(m, gpus, load, before.get(m.name))
        if p.accelerator is not None:
            load[p.accelerator] = load.get(p.accelerator, 0) + p.instances
        decided[m.name] = p
    return Plan(tuple(decided[m.name] for m in models))


class ActionKind(StrEnum):
    DRAIN = "drain"  # stop taking requests, finish those in flight, unload
    LOAD = "load"  # load on placement.device and serve
    UNAVAILABLE = "unavailable"  # not loaded; show placement.reason, readiness false


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    model: str
    placement: Placement | None  # the new placement (None for a model no longer configured)
    reason: str


def diff(old: Plan | None, new: Plan) -> tuple[Action, ...]:
    """The actions from ``old`` to ``new``: drains first (they free memory), then the rest."""
    before = old.by_model() if old else {}
    after = new.by_model()
    drains: list[Action] = []
    rest: list[Action] = []
    for name, p in before.items():
        if name not in after and p.runnable:
            drains.append(Action(ActionKind.DRAIN, name, None, "removed from the configuration"))
    for p in new.placements:
        q = before.get(p.model)
        if q is not None and q == p:
            continue
        if q is not None and q.runnable and (q.where() != p.where() or not p.runnable
                                             or q.instances != p.instances):
            drains.append(Action(ActionKind.DRAIN, p.model, p, p.reason))
        if p.runnable and (q is None or not q.runnable or q.where() != p.where()
                           or q.instances != p.instances):
            rest.append(Action(ActionKind.LOAD, p.model, p, p.reason))
        elif not p.runnable and (q is None or q.runnable or q.reason != p.reason):
            rest.append(Action(ActionKind.UNAVAILABLE, p.model, p, p.reason))
    return (*drains, *rest)
