"""Stop sequences, EOS and max_tokens; held-back text never shows half a stop sequence."""

from __future__ import annotations

from llmos.llm.stopping import StopChecker, StopCriteria


def run(criteria: StopCriteria, pieces: list[tuple[int, str]]) -> tuple[list[str], str | None]:
    checker = StopChecker(criteria)
    out: list[str] = []
    for token, delta in pieces:
        text, reason = checker.feed(token, delta)
        out.append(text)
        if reason is not None:
            return out, reason
    return out, None


def test_eos_stops_and_releases_held_text() -> None:
    out, reason = run(StopCriteria(10, frozenset({2}), ("END",)),
                      [(5, "Hello E"), (6, "N"), (2, "")])
    assert reason == "stop"
    assert "".join(out) == "Hello EN"
    assert out[0] == "Hello "  # "E" might start "END": held back


def test_stop_sequence_is_cut_even_across_tokens() -> None:
    out, reason = run(StopCriteria(10, frozenset(), ("\n\nUser:",)),
                      [(1, "Paris."), (2, "\n"), (3, "\nUs"), (4, "er: more")])
    assert reason == "stop"
    assert "".join(out) == "Paris."


def test_earliest_of_several_stop_sequences_wins() -> None:
    out, reason = run(StopCriteria(10, frozenset(), ("b", "cd")), [(1, "xxcdyb")])
    assert (out, reason) == (["xx"], "stop")


def test_max_tokens_ends_with_length() -> None:
    out, reason = run(StopCriteria(3), [(1, "a"), (2, "b"), (3, "c"), (4, "d")])
    assert (out, reason) == (["a", "b", "c"], "length")


def test_false_alarm_is_released() -> None:
    out, reason = run(StopCriteria(10, frozenset(), ("STOP",)), [(1, "ST"), (2, "ay")])
    assert reason is None
    assert out == ["", "STay"]
