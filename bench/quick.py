"""``make bench-quick``: the regression guard, under 5 minutes.

It reruns the two ratios that need no peer (LLM OS v2 infer against raw ``session.run`` at
each concurrency, a sealed load against a plaintext one), shorter than ``make bench`` does,
into ``build/bench-quick/`` (bench/README.md and bench/results/ stay as they are), and
compares them with the committed ones in ``bench/results/results.json``: it fails when a
ratio is more than ``TOLERANCE`` worse than the committed one. Like every figure here the
ratios come from interleaved runs, with the machine's load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import report, run, wrk

log = logging.getLogger("bench.quick")

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "bench" / "results" / "results.json"
TOLERANCE = 0.15  # a ratio may be this much worse than the committed one


def ratios(results: Mapping[str, Any]) -> dict[str, tuple[float, bool]]:
    """name -> (ratio, higher is better) of a results document (pure)."""
    out: dict[str, tuple[float, bool]] = {}
    tensor = results.get("tensor", {})
    if "rows" in tensor:
        for x in report.against_raw(tensor["rows"]):
            out[f"v2 infer / raw, concurrency {x['concurrency']}"] = (float(x["ratio"]), True)
    sealed = results.get("sealed", {})
    if "load_ratio" in sealed:
        out["sealed load / plain load"] = (float(sealed["load_ratio"]), False)
    return out


def compare(committed: Mapping[str, tuple[float, bool]],
            fresh: Mapping[str, tuple[float, bool]], tolerance: float = TOLERANCE
            ) -> tuple[list[str], list[str]]:
    """(table rows, failures): each committed ratio against the fresh one (pure). A ratio
    that could not be measured now is a failure too."""
    rows, failures = [], []
    for name, (old, higher) in committed.items():
        if name not in fresh:
            failures.append(f"{name}: not measured")
            continue
        new = fresh[name][0]
        change = (new / old - 1) if higher else (old / new - 1)
        bad = change < -tolerance
        rows.append(f"| {name} | {old:.2f}x | {new:.2f}x | {change:+.0%} | "
                    f"{'**regressed**' if bad else 'ok'} |")
        if bad:
            failures.append(f"{name}: {new:.2f}x against {old:.2f}x committed "
                            f"({change:+.0%}, more than {tolerance:.0%} worse)")
    return rows, failures


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quick", description=__doc__)
    p.add_argument("--demo", type=Path, default=ROOT / "build" / "demo")
    p.add_argument("--key", type=Path, default=ROOT / "build" / "keys" / "fleet.key")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "bench-quick")
    p.add_argument("--committed", type=Path, default=COMMITTED)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = a.out.resolve()
    opts = run.Options(
        demo=a.demo.resolve(), key=a.key.resolve(), venv_root=out / "no-peers",
        out=out, scratch=out / "scratch", sections=("tensor", "sealed"),
        concurrency=(1, 8, 32), load=wrk.WrkSettings(duration_s=3, warmup_s=1), rounds=2,
        llm_tokens=0, llm_repeat=0, llm_helper=False, merge=False, readme=None)
    fresh = run.run(opts)
    committed = json.loads(a.committed.read_text())
    rows, failures = compare(ratios(committed), ratios(fresh))
    load = {k: fresh[k].get("load_avg_before") for k in opts.sections if k in fresh}
    print(f"\nbench-quick: fresh ratios against {a.committed} (generated "
          f"{committed.get('generated', '?')}); 1-minute load average before each section: "
          + ", ".join(f"{k} {v:.2f}" for k, v in load.items() if v is not None)
          + f" (now {os.getloadavg()[0]:.2f})\n")
    print("| ratio | committed | now | change | |\n|---|---:|---:|---:|---|")
    print("\n".join(rows))
    for f in failures:
        print(f"REGRESSION {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
