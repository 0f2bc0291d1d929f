"""Health is a pure function of the key and the models' states; states change by the table."""

from __future__ import annotations

import pytest

from llmos.state import (
    TRANSITIONS,
    UPDATES,
    Cause,
    IllegalTransition,
    KeyStatus,
    ModelState,
    ModelStatus,
    Overall,
    UpdateCause,
    UpdateState,
    UpdateStatus,
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


def test_a_key_released_on_an_unprotected_boot_warns_and_serves() -> None:
    key = KeyStatus("tpm2", released=True, details={"protected": False,
                                                    "problems": ["Secure Boot is off"]})
    h = assess(key, [_m("a", ModelState.READY)], starting=False)
    assert h.overall is Overall.READY and h.ready
    assert h.reasons == ("warning: fleet key not protected on this boot: Secure Boot is off",)
    assert h.to_dict()["key"]["protected"] is False


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
    (ModelState.READY, Cause.UPDATED, ModelState.READY),
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
    (ModelState.LOADING, Cause.UPDATED),  # only a serving model is updated
    (ModelState.FAILED, Cause.UPDATED),
])
def test_illegal_transitions_raise(state: ModelState, cause: Cause) -> None:
    with pytest.raises(IllegalTransition, match=f"from {state.value} by {cause.value}"):
        ModelStatus("m", state).to(cause, now=1.0)


# --- model updates ---------------------------------------------------------------------

def test_every_update_cause_has_a_rule_and_every_update_state_is_reachable() -> None:
    assert set(UPDATES) == set(UpdateCause)
    assert {target for _, target in UPDATES.values()} == set(UpdateState)


def test_an_update_runs_loading_draining_done_and_the_model_stays_ready() -> None:
    begun = UpdateStatus.begin(None, UpdateCause.BEGIN, version="2", previous="1", now=1.0)
    assert (begun.state, begun.started, begun.since) == (UpdateState.LOADING, 1.0, 1.0)
    assert not UpdateStatus.settled(begun)
    warm = begun.to(UpdateCause.WARM, now=2.0, load_time_s=0.5)
    assert (warm.state, warm.load_time_s, warm.started) == (UpdateState.DRAINING, 0.5, 1.0)
    done = warm.to(UpdateCause.RETIRED, now=3.0)
    assert done.state is UpdateState.DONE and UpdateStatus.settled(done)
    model = ModelStatus("m", ModelState.READY, version="1", update=warm)
    after = model.to(Cause.UPDATED, now=2.0, version="2")
    assert (after.state, after.version, after.update) == (ModelState.READY, "2", warm)
    assert after.to_dict()["update"]["state"] == "DRAINING"
    assert assess(OK_KEY, [after], starting=False).overall is Overall.READY


def test_a_failed_or_refused_update_settles_and_the_next_may_begin() -> None:
    begun = UpdateStatus.begin(None, UpdateCause.BEGIN, version="2", previous="1", now=1.0)
    failed = begun.to(UpdateCause.FAILED, now=2.0, reason="runtime refused it")
    assert failed.state is UpdateState.FAILED and UpdateStatus.settled(failed)
    again = UpdateStatus.begin(failed, UpdateCause.BEGIN, version="2", previous="1", now=3.0)
    assert (again.state, again.reason, again.started) == (UpdateState.LOADING, "", 3.0)
    refused = UpdateStatus.begin(None, UpdateCause.REFUSED, version="1", previous="1",
                                 now=4.0, reason="already serves version '1'")
    assert (refused.state, refused.reason) == (UpdateState.FAILED, "already serves version '1'")


@pytest.mark.parametrize(("state", "cause"), [
    (UpdateState.LOADING, UpdateCause.BEGIN),  # one update at a time
    (UpdateState.DRAINING, UpdateCause.BEGIN),
    (UpdateState.LOADING, UpdateCause.REFUSED),  # a refusal never hides one under way
    (UpdateState.DRAINING, UpdateCause.FAILED),  # once warm, the new version serves
    (UpdateState.LOADING, UpdateCause.RETIRED),  # nothing to retire before the switch
    (UpdateState.DONE, UpdateCause.WARM),
])
def test_illegal_update_transitions_raise(state: UpdateState, cause: UpdateCause) -> None:
    with pytest.raises(IllegalTransition, match=f"from {state.value} by {cause.value}"):
        UpdateStatus(state, "2", "1").to(cause, now=1.0)
