"""The pure placement plan and the actions between two plans."""

from __future__ import annotations

from pathlib import Path

from llmos.config import ModelConfig
from llmos.controllers.placement import (
    Action,
    ActionKind,
    PlacementState,
    Plan,
    diff,
    plan,
)
from llmos.hw.model import Accelerator, Inventory

GPU0, GPU1 = "0000:01:00.0", "0000:02:00.0"


def _gpu(address: str, index: int) -> Accelerator:
    return Accelerator(address, "nvidia", 0x10DE, 0x2330, 0x030200, "H100", "nvidia", 0, (),
                       cuda_index=index)


def _amd() -> Accelerator:
    return Accelerator("0000:03:00.0", "amd", 0x1002, 0x744C, 0x030000, "RX", "amdgpu", 0, ())


TWO = Inventory((_gpu(GPU0, 0), _gpu(GPU1, 1), _amd()))
ONE = Inventory((_gpu(GPU0, 0), _amd()))
NONE = Inventory((_amd(),))


def _m(name: str, device: str, fallback: bool = False, instances: int = 1) -> ModelConfig:
    return ModelConfig(name, Path(f"{name}.pack"), device=device, cpu_fallback=fallback,
                       instances=instances)


def _where(p: Plan) -> dict[str, tuple[str, str | None]]:
    return {x.model: (x.state.value, x.device) for x in p.placements}


def test_cpu_models_stay_on_cpu_even_with_gpus() -> None:
    (p,) = plan(TWO, [_m("a", "cpu")]).placements
    assert (p.state, p.device, p.accelerator) == (PlacementState.PLACED, "cpu", None)


def test_cuda_n_is_that_gpu() -> None:
    p = plan(TWO, [_m("a", "cuda:1"), _m("b", "CUDA:0")])
    assert _where(p) == {"a": ("placed", "cuda:1"), "b": ("placed", "cuda:0")}
    assert p.by_model()["a"].accelerator == GPU1


def test_absent_gpu_is_unavailable_with_the_reason_and_the_fix() -> None:
    (p,) = plan(ONE, [_m("a", "cuda:1")]).placements
    assert (p.state, p.device, p.runnable) == (PlacementState.UNAVAILABLE, None, False)
    assert "cuda:1 is absent" in p.reason and f"cuda:0 ({GPU0})" in p.reason
    assert "cpu_fallback = true" in p.reason


def test_fallback_only_when_configured_and_never_silent() -> None:
    got = plan(NONE, [_m("a", "cuda", fallback=True), _m("b", "cuda"),
                      _m("c", "cuda:0", fallback=True)])
    a, b, c = got.placements
    assert (a.state, a.device) == (PlacementState.FALLBACK, "cpu")
    assert "no CUDA GPU is present" in a.reason and "cpu_fallback = true" in a.reason
    assert (b.state, b.device) == (PlacementState.UNAVAILABLE, None)
    assert (c.state, c.device) == (PlacementState.FALLBACK, "cpu")


def test_any_prefers_a_gpu_and_else_runs_on_cpu_as_asked() -> None:
    assert _where(plan(ONE, [_m("a", "any")])) == {"a": ("placed", "cuda:0")}
    (p,) = plan(NONE, [_m("a", "any")]).placements
    assert (p.state, p.device) == (PlacementState.PLACED, "cpu")
    assert "device = any" in p.reason  # the AMD GPU is not usable by the runtimes: said so


def test_floating_models_balance_by_instances_after_fixed_ones() -> None:
    got = plan(TWO, [_m("x", "any"), _m("big", "cuda:0", instances=3), _m("y", "cuda"),
                     _m("z", "any")])
    # big pins 3 instances on cuda:0 first; x then y go to cuda:1 (1, then 2 < 3), z too.
    assert _where(got) == {"x": ("placed", "cuda:1"), "big": ("placed", "cuda:0"),
                           "y": ("placed", "cuda:1"), "z": ("placed", "cuda:1")}
    even = plan(TWO, [_m("p", "cuda"), _m("q", "cuda"), _m("r", "cuda")])
    assert [x.device for x in even.placements] == ["cuda:0", "cuda:1", "cuda:0"]


def test_unknown_device_is_unavailable() -> None:
    (p,) = plan(TWO, [_m("a", "tpu:0", fallback=True)]).placements
    assert p.state is PlacementState.UNAVAILABLE and "unknown device 'tpu:0'" in p.reason


def test_replanning_is_idempotent_and_keeps_models_where_they_are() -> None:
    models = [_m("p", "cuda"), _m("q", "cuda")]
    first = plan(ONE, models)
    assert [x.device for x in first.placements] == ["cuda:0", "cuda:0"]
    again = plan(ONE, models, first)
    assert again == first and diff(first, again) == ()
    # A second GPU arrives: the models already running are not moved to balance.
    grown = plan(TWO, models, first)
    assert [x.accelerator for x in grown.placements] == [GPU0, GPU0]
    assert diff(first, grown) == ()


def test_a_kept_gpu_whose_ordinal_shifts_is_not_a_move() -> None:
    models = [_m("p", "cuda")]
    before = plan(TWO, models, Plan())
    moved = plan(TWO, [_m("p", "cuda:1")])  # p pinned on GPU1
    assert moved.by_model()["p"].accelerator == GPU1
    only_b = Inventory((_gpu(GPU1, 0),))  # GPU0 unplugged: GPU1 is now ordinal 0
    after = plan(only_b, models, moved)
    assert after.by_model()["p"].device == "cuda:0"
    assert after.by_model()["p"].accelerator == GPU1
    assert diff(moved, after) == ()
    assert before.by_model()["p"].accelerator == GPU0


def test_diff_of_unplug_and_replug() -> None:
    models = [_m("stay", "cuda:0"), _m("gone", "cuda:1"), _m("fb", "cuda:1", fallback=True)]
    up = plan(TWO, models)
    first = diff(None, up)
    assert [(a.kind, a.model) for a in first] == [
        (ActionKind.LOAD, "stay"), (ActionKind.LOAD, "gone"), (ActionKind.LOAD, "fb")]

    down = plan(ONE, models, up)
    actions = diff(up, down)
    assert [(a.kind, a.model) for a in actions] == [
        (ActionKind.DRAIN, "gone"), (ActionKind.DRAIN, "fb"),  # drains come first
        (ActionKind.UNAVAILABLE, "gone"), (ActionKind.LOAD, "fb")]
    assert actions[3].placement is not None and actions[3].placement.device == "cpu"

    back = plan(TWO, models, down)
    assert [(a.kind, a.model) for a in diff(down, back)] == [
        (ActionKind.DRAIN, "fb"), (ActionKind.LOAD, "gone"), (ActionKind.LOAD, "fb")]


def test_diff_drains_models_no_longer_configured() -> None:
    old = plan(ONE, [_m("a", "cpu"), _m("b", "cuda:1")])
    new = plan(ONE, [])
    drain = Action(ActionKind.DRAIN, "a", None, "removed from the configuration")
    assert diff(old, new) == (drain,)  # "b" was never running: nothing to drain
