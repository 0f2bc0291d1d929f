"""The PNG beside the table: ``python -m bench.chart results.json chart.png``.

Runs in the ``peers`` bench venv (matplotlib lives there, not in the project's venv).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the headless backend
from matplotlib.axes import Axes


def _grouped(ax: Axes, rows: Sequence[Mapping[str, Any]], key: str, title: str,
             ylabel: str, log: bool = False) -> None:
    levels = sorted({int(r["concurrency"]) for r in rows})
    names = list(dict.fromkeys(str(r["contestant"]) for r in rows))
    table = {(str(r["contestant"]), int(r["concurrency"])): r for r in rows}
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(levels))]
        ys = [float(table[(name, c)][key]) if (name, c) in table else 0.0 for c in levels]
        bars = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bars, fmt="%.0f" if key == "rps" else "%.1f", fontsize=6)
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(levels))],
                  [f"c={c}" for c in levels])
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=6)


def _bars(ax: Axes, labels: Sequence[str], values: Sequence[float], title: str,
          ylabel: str) -> None:
    bars = ax.bar(labels, values, color=["#888", "#2a7"][: len(values)] + ["#47c"] * 8)
    ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(axis="x", labelsize=7)


def _sealed(load_ax: Axes, crypt_ax: Axes, doc: Mapping[str, Any]) -> None:
    _bars(load_ax, ["plaintext ONNX", "sealed pack"],
          [doc["plain_load_ms"], doc["sealed_load_ms"]],
          f"model load: sealed {doc['load_ratio']:.2f}x plaintext", "ms")
    _bars(crypt_ax, ["openssl speed", "vault chunks"],
          [doc["openssl_decrypt_mb_s"], doc["vault_decrypt_mb_s"]],
          "AES-256-GCM decrypt", "MB/s")


def _llm(ax: Axes, rows: Sequence[Mapping[str, Any]]) -> None:
    named = [r for r in rows if isinstance(r.get("decode_tok_s"), (int, float))]
    bars = ax.bar([str(r["contestant"]) for r in named],
                  [float(r["decode_tok_s"]) for r in named], color="#47c")
    ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_title("LLM decode tokens/s (one stream, greedy)", fontsize=9)
    ax.tick_params(axis="x", labelsize=6, rotation=20)


def draw(results: Mapping[str, Any], out: Path) -> None:
    tensor = results.get("tensor", {})
    sealed = results.get("sealed", {})
    llm_rows = results.get("llm", {}).get("rows", [])
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    if tensor.get("rows"):
        _grouped(axes[0][0], tensor["rows"], "rps", "tensor model: requests/s", "req/s")
        _grouped(axes[0][1], tensor["rows"], "p50_ms", "tensor model: p50 latency", "ms",
                 log=True)
        _grouped(axes[0][2], tensor["rows"], "p99_ms", "tensor model: p99 latency", "ms",
                 log=True)
    if "load_ratio" in sealed:
        _sealed(axes[1][0], axes[1][1], sealed)
    if llm_rows:
        _llm(axes[1][2], llm_rows)
    for ax in (a for row in axes for a in row):
        if not ax.has_data():
            ax.set_axis_off()
    m = results["machine"]
    fig.suptitle(f"make bench on {m['cpu']} ({m['cores']} cores), {results['generated']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.chart results.json chart.png", file=sys.stderr)
        return 2
    draw(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
