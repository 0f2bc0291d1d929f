"""Causal LMs prepack their weights unless the model's config says no, or the loader learnt
that this machine's kernels read them in place (llmos.llm.model)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmos import config
from llmos.llm.model import with_prepacking
from llmos.runtimes.base import RuntimeOptions
from llmos.serving.backend import runtime_options


def test_unset_means_prepacked_for_a_causal_lm() -> None:
    assert with_prepacking(RuntimeOptions()).prepack is True


def test_an_explicit_choice_is_kept_and_off_is_not_silent(
        caplog: pytest.LogCaptureFixture) -> None:
    assert with_prepacking(RuntimeOptions(prepack=True)).prepack is True
    with caplog.at_level(logging.WARNING, logger="llmos.llm.model"):
        assert with_prepacking(RuntimeOptions(prepack=False)).prepack is False
    assert "45x slower" in caplog.text


def test_kernels_that_read_in_place_turn_it_off_without_the_config_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    """The loader's choice (its fallback, or the memo of an earlier start) is not the
    operator's: it costs nothing on this CPU, and the loader logs it in its own words."""
    with caplog.at_level(logging.WARNING, logger="llmos.llm.model"):
        assert with_prepacking(RuntimeOptions(reads_in_place=True)).prepack is False
    assert caplog.text == ""
    assert with_prepacking(RuntimeOptions(prepack=True, reads_in_place=True)).prepack is True


def test_the_config_turning_it_off_where_it_would_not_help_is_not_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    """On a CPU whose kernels read the weights in place, ``prepack = false`` costs nothing:
    a warning of ~45x slower decoding would be false there."""
    with caplog.at_level(logging.WARNING, logger="llmos.llm.model"):
        off = with_prepacking(RuntimeOptions(prepack=False, reads_in_place=True))
    assert off.prepack is False
    assert caplog.text == ""


def test_the_model_config_reaches_the_runtime_options(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[models]]\nname = "a"\npack = "/p/a.sealed"\n\n'
                    '[[models]]\nname = "b"\npack = "/p/b.sealed"\nprepack = false\n'
                    'spin_us = 200\n')
    a, b = config.load(path, environ={}).models
    assert runtime_options(a, "cpu").prepack is None  # the model kind decides
    assert runtime_options(b, "cpu").prepack is False
    assert (runtime_options(a, "cpu").spin_us, runtime_options(b, "cpu").spin_us) == (20, 200)
    assert RuntimeOptions().spin_us == runtime_options(a, "cpu").spin_us  # the same default
    assert runtime_options(a, "cpu", reads_in_place=True).prepacks(True) is False
