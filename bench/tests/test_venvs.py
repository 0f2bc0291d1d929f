from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import venvs
from bench.venvs import VenvSpec

FREEZE = """# pinned
onnxruntime==1.32.0
tokenizers==0.23.3
Jinja2==3.1.6
onnx_ir==1.1.0   # a comment
-e git+https://example.invalid/x#egg=x
"""


def test_read_constraints_normalises_names() -> None:
    pins = venvs.read_constraints(FREEZE)
    assert pins == {"onnxruntime": "1.32.0", "tokenizers": "0.23.3", "jinja2": "3.1.6",
                    "onnx-ir": "1.1.0"}


def test_shared_packages_take_the_projects_versions() -> None:
    spec = VenvSpec("x", ("fastapi==1.0",), "test", shared=("onnxruntime", "absent"))
    assert venvs.requirements(spec, venvs.read_constraints(FREEZE)) == [
        "fastapi==1.0", "onnxruntime==1.32.0", "absent"]


def test_the_key_changes_with_the_spec_and_the_pins() -> None:
    spec = VenvSpec("x", ("a==1",), "test", shared=("onnxruntime",))
    pins = venvs.read_constraints(FREEZE)
    assert spec.key(pins) == spec.key(dict(pins))
    assert spec.key(pins) != VenvSpec("x", ("a==2",), "test", shared=("onnxruntime",)).key(pins)
    assert spec.key(pins) != spec.key({**pins, "onnxruntime": "1.33.0"})


def test_status_reports_ready_failed_and_missing(tmp_path: Path) -> None:
    ready = tmp_path / "ok" / "bin"
    ready.mkdir(parents=True)
    (ready / "python").touch()
    (tmp_path / "ok" / venvs.SPEC_FILE).write_text("{}")
    (tmp_path / "bad.failed").write_text(json.dumps({"key": "k", "reason": "pip exited 1"}))
    assert venvs.status(tmp_path, "ok").python == ready / "python"
    assert venvs.status(tmp_path, "bad") == venvs.Status("bad", None, "pip exited 1")
    assert "not installed" in venvs.status(tmp_path, "never").reason


def test_a_failure_with_the_same_spec_is_not_retried(tmp_path: Path) -> None:
    spec = VenvSpec("bad", ("surely-not-a-package==0",), "test")
    (tmp_path / "bad.failed").write_text(json.dumps({"key": spec.key({}), "reason": "earlier"}))
    st = venvs.ensure(spec, tmp_path, {}, retry=False)
    assert st.reason == "earlier"
    assert not (tmp_path / "bad").exists()  # nothing was attempted


def test_every_table_entry_names_pinned_packages() -> None:
    for spec in venvs.VENVS:
        assert all("==" in p for p in spec.packages), spec.name
    assert [s.name for s in venvs.VENVS if s.required] == ["peers"]  # the chart needs it


def test_missing_build_tools_fail_at_once_and_are_retried_once_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = VenvSpec("cpp", ("surely-not-a-package==0",), "test", tools=("no-such-compiler",))
    st = venvs.ensure(spec, tmp_path, {}, retry=False)
    assert st.python is None and "no-such-compiler" in st.reason
    assert not (tmp_path / "cpp").exists()  # pip was never run
    assert json.loads((tmp_path / "cpp.failed").read_text())["missing"] == ["no-such-compiler"]
    calls: list[list[str]] = []

    def fake_run(argv: list[str], env: object, cap_s: float, log_path: Path) -> tuple[int, float]:
        calls.append(argv)
        return 1, 0.0  # pip fails this time, for another reason

    monkeypatch.setattr(venvs, "_run_capped", fake_run)
    monkeypatch.setattr(venvs, "missing_tools", lambda spec: [])  # the tools are there now
    st = venvs.ensure(spec, tmp_path, {}, retry=False)
    assert calls and st.reason.startswith("pip exited 1")
    calls.clear()
    assert venvs.ensure(spec, tmp_path, {}, retry=False).reason.startswith("pip exited 1")
    assert not calls  # that failure would happen again: not retried


def test_the_tools_are_not_part_of_the_key() -> None:
    assert VenvSpec("x", ("a==1",), "t").key({}) == VenvSpec("x", ("a==1",), "t",
                                                            tools=("cc",)).key({})
