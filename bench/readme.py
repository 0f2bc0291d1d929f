"""Rewrite the figures in bench/README.md, between its markers and nowhere else.

``python -m bench.readme [bench/README.md]`` puts ``bench/results/results.md`` (with the
chart link made relative to that file) between ``<!-- bench:begin -->`` and
``<!-- bench:end -->``. Everything outside the markers is left byte for byte.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "bench" / "README.md"  # the figures live here, not in the top README

log = logging.getLogger(__name__)


class MarkerError(ValueError):
    """The markers are missing, repeated or out of order."""


def splice(text: str, block: str) -> str:
    """``text`` with whatever lies between the markers replaced by ``block`` (pure)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise MarkerError(f"expected exactly one {BEGIN} and one {END}")
    head, rest = text.split(BEGIN)
    if END not in rest:
        raise MarkerError(f"{END} comes before {BEGIN}")
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{block.strip()}\n{END}{tail}"


def update(readme: Path, results_md: Path) -> bool:
    """Splice the report into ``readme``; False (and a warning) when it has no markers."""
    block = results_md.read_text()
    chart = results_md.with_name("chart.png")
    link = os.path.relpath(chart.resolve(), readme.resolve().parent)
    block = block.replace("](chart.png)", f"]({link})")
    text = readme.read_text()
    try:
        new = splice(text, block)
    except MarkerError as exc:
        log.warning("%s: %s; figures not written there", readme, exc)
        return False
    if new != text:
        readme.write_text(new)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("readme", type=Path, nargs="?", default=FIGURES)
    parser.add_argument("--results", type=Path,
                        default=ROOT / "bench" / "results" / "results.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return 0 if update(args.readme, args.results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
