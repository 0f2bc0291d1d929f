"""bench.fleet_scaling end to end on a few items (no timing assertions: shapes and counts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import fleet_scaling, sleep_appliance


def test_sleep_runtime_answers_a_hash_per_text() -> None:
    import numpy as np

    rt = sleep_appliance.SleepRuntime(0.0)
    out = rt.infer({"text": np.array([b"a", b"b"], dtype=object)})["embedding"]
    assert out.shape == (2, sleep_appliance.WIDTH)
    assert out[0].tolist() == pytest.approx(sleep_appliance.vector("a"))
    assert out[0].tolist() != out[1].tolist()


@pytest.mark.timeout(300)
def test_scaling_run_reports_every_fleet_size(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    assert fleet_scaling.main(["--latency-ms", "5", "--items", "24", "--appliances", "1", "2",
                               "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["appliances"] for r in rows] == [1, 2]
    assert all(r["items"] == 24 and r["dask_s"] > 0 and r["direct_s"] > 0 for r in rows)
    assert [len(r["shares"]) for r in rows] == [1, 2]
    assert all(sum(r["shares"]) >= 24 for r in rows)  # every item was a request somewhere
