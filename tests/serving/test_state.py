"""Health is a pure function of the key and the models' states; states change by the table."""

from __future__ import annotations

import pytest

from llmos.state import (
    TRANSITIONS,
    Cause,
    IllegalTransition,
    KeyStatus,
    ModelState,
    ModelStatus,
    Overall,
    assess,
    next_state,
)

OK_KEY = KeyStatus("keyfile", released=True)


def _m(name: str, state: ModelState, reason: str = "") -> ModelStatus:
    return ModelStatus(name, state, reason=reason)


def test_starting_until_the_pass_is_over() -> None:
    h = assess(KeyStatus("tpm2"), [_m("a", ModelState.LOADING)], starting=True)
    assert h.overall is Overall.STARTING and not h.ready and not h.settled
    assert h.reasons == ("loading: a",)


def test_ready_when_every_model_serves() -> None:
    h = assess(OK_KEY, [_m("a", ModelState.READY), _m("b", ModelState.READY)], starting=False)
    assert h.overall is Overall.READY and h.ready and h.settled and h.reasons == ()
    assert h.summary() == "ready: 2/2 models serving"


def test_degraded_names_the_failed_model_and_still_serves() -> None:
    h = assess(OK_KEY, [_m("a", ModelState.READY), _m("b", ModelState.FAILED, "tampered")],
               starting=False)
    assert h.overall is Overall.DEGRADED and h.ready
    assert h.reasons == ("model b failed: tampered",)
    assert h.to_dict()["models"]["b"]["state"] == "FAILED"


def test_no_key_means_unavailable_with_the_reason() -> None:
    key = KeyStatus("tpm2", released=False, reason="PCR 7 changed")
    h = assess(key, [_m("a", ModelState.UNAVAILABLE, "no key")], starting=False)
    assert h.overall is Overall.UNAVAILABLE and not h.ready and h.settled
    assert h.reasons == ("fleet key unavailable (tpm2): PCR 7 changed",)


def test_nothing_serving_is_unavailable() -> None:
    h = assess(OK_KEY, [_m("a", ModelState.FAILED, "bad")], starting=False)
    assert h.overall is Overall.UNAVAILABLE and not h.ready


def test_a_reload_at_run_time_does_not_drop_readiness() -> None:
    h = assess(OK_KEY, [_m("a", ModelState.READY), _m("b", ModelState.LOADING)], starting=False)
    assert h.overall is Overall.DEGRADED and h.ready
    assert h.reasons[0] == "loading: b"


def test_status_transitions_reset_the_reason() -> None:
    failed = ModelStatus("a", ModelState.FAILED, version="1", reason="x", error_type="E")
    loading = failed.to(Cause.LOAD, now=5.0)
    assert (loading.state, loading.reason, loading.error_type, loading.version, loading.since) \
        == (ModelState.LOADING, "", "", "1", 5.0)


def test_warnings_are_reasons_that_never_cost_readiness() -> None:
    fallback = ModelStatus("f", ModelState.READY, reason="cuda:0 is absent; running on the CPU",
                           device="cpu", placement="fallback")
    h = assess(OK_KEY, [_m("a", ModelState.READY), fallback], starting=False,
               warnings=["memory fallback (mlock): mlock failed; to fix: raise the limit"])
    assert h.overall is Overall.READY and h.ready
    assert h.reasons == (
        "warning: model f runs on cpu: cuda:0 is absent; running on the CPU",
        "warning: memory fallback (mlock): mlock failed; to fix: raise the limit")
    assert h.summary().startswith("ready: 2/2 models serving; warning: model f runs on cpu")


def test_status_shows_where_a_model_runs_and_its_memory() -> None:
    st = ModelStatus("m", ModelState.READY, device="cuda:0", placement="placed",
                     memory_bytes=4096)
    doc = st.to_dict()
    assert (doc["device"], doc["placement"], doc["memory_bytes"]) == ("cuda:0", "placed", 4096)
    gone = st.to(Cause.DRAIN, now=1.0, reason="cuda:0 is absent", device="",
                 placement="unavailable", memory_bytes=0)
    assert assess(OK_KEY, [gone], starting=False).reasons == (
        "model m unavailable: cuda:0 is absent",)


# --- the transition table ----------------------------------------------------------------

def test_every_cause_has_a_rule_and_every_state_is_reachable() -> None:
    assert set(TRANSITIONS) == set(Cause)
    assert {target for _, target in TRANSITIONS.values()} == set(ModelState)


@pytest.mark.parametrize(("state", "cause", "target"), [
    (ModelState.LOADING, Cause.LOADED, ModelState.READY),
    (ModelState.LOADING, Cause.LOAD_FAILED, ModelState.FAILED),
    (ModelState.LOADING, Cause.KEY_UNAVAILABLE, ModelState.UNAVAILABLE),
    (ModelState.FAILED, Cause.LOAD, ModelState.LOADING),
    (ModelState.UNLOADED, Cause.LOAD, ModelState.LOADING),
    (ModelState.READY, Cause.MOVE, ModelState.LOADING),
    (ModelState.READY, Cause.DRAIN, ModelState.UNAVAILABLE),
    (ModelState.READY, Cause.UNLOAD, ModelState.UNLOADED),
    (ModelState.UNAVAILABLE, Cause.NO_DEVICE, ModelState.UNAVAILABLE),
])
def test_allowed_transitions(state: ModelState, cause: Cause, target: ModelState) -> None:
    assert next_state(state, cause) is target
    st = ModelStatus("m", state).to(cause, now=2.0)
    assert (st.state, st.since) == (target, 2.0)


@pytest.mark.parametrize(("state", "cause"), [
    (ModelState.READY, Cause.LOADED),  # only a load in progress ends in READY
    (ModelState.FAILED, Cause.LOADED),
    (ModelState.UNLOADED, Cause.LOAD_FAILED),  # a failure needs a load under way
    (ModelState.READY, Cause.LOAD),  # a serving model is moved (MOVE), never re-loaded
    (ModelState.LOADING, Cause.MOVE),
    (ModelState.LOADING, Cause.DRAIN),  # only what serves is drained
    (ModelState.READY, Cause.KEY_UNAVAILABLE),  # a serving model already has the key
])
def test_illegal_transitions_raise(state: ModelState, cause: Cause) -> None:
    with pytest.raises(IllegalTransition, match=f"from {state.value} by {cause.value}"):
        ModelStatus("m", state).to(cause, now=1.0)
