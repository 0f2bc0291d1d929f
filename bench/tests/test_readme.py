from __future__ import annotations

from pathlib import Path

import pytest

from bench.readme import BEGIN, END, MarkerError, splice, update


def test_splice_replaces_only_between_markers() -> None:
    text = f"# Title\n\nintro\n{BEGIN}\nold figures\n{END}\n\n## After\ntail\n"
    out = splice(text, "new table\n")
    assert out == f"# Title\n\nintro\n{BEGIN}\nnew table\n{END}\n\n## After\ntail\n"
    assert splice(out, "new table") == out  # idempotent


@pytest.mark.parametrize("text", ["no markers", f"{BEGIN} only", f"{END}\n{BEGIN}",
                                  f"{BEGIN}{END}{BEGIN}{END}"])
def test_splice_refuses_bad_markers(text: str) -> None:
    with pytest.raises(MarkerError):
        splice(text, "x")


def test_update_links_the_chart_from_the_readme(tmp_path: Path) -> None:
    results = tmp_path / "bench" / "results"
    results.mkdir(parents=True)
    (results / "results.md").write_text("| a |\n\n![benchmark chart](chart.png)\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"top\n{BEGIN}\n{END}\nbottom\n")
    assert update(readme, results / "results.md")
    assert readme.read_text() == (f"top\n{BEGIN}\n| a |\n\n"
                                  f"![benchmark chart](bench/results/chart.png)\n{END}\nbottom\n")


def test_update_leaves_a_readme_without_markers_alone(tmp_path: Path) -> None:
    (tmp_path / "results.md").write_text("x")
    readme = tmp_path / "README.md"
    readme.write_text("nothing to see\n")
    assert not update(readme, tmp_path / "results.md")
    assert readme.read_text() == "nothing to see\n"


def test_make_bench_writes_its_figures_into_bench_readme_only() -> None:
    from bench.readme import FIGURES, ROOT

    assert FIGURES == ROOT / "bench" / "README.md"
    splice(FIGURES.read_text(), "x")  # exactly one pair of markers there
    assert BEGIN not in (ROOT / "README.md").read_text()  # and none in the top README
