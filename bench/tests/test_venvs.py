from __future__ import annotations

import json
from pathlib import Path

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
