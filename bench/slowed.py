"""``python -m bench.slowed MS ARGS...``: ``llmos ARGS...`` with MS milliseconds of busy
work (Python, holding the GIL, as a slower codec would) added to every inference batch: a
real regression for ``make bench-quick`` to catch (``python -m bench.quick --slowdown-ms
MS`` must exit 1). Benchmarks only: the server itself has no such knob.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from llmos import cli
from llmos.serving.batcher import Batcher, Infer, Result, Tensors


def slow_down(ms: float) -> None:
    """Every batch the workers run from now on takes ``ms`` longer."""
    call = Batcher._call

    def slowed(infer: Infer, inputs: Tensors) -> Result:
        end = time.thread_time() + ms / 1000  # CPU time: a busy machine does not shorten it
        while time.thread_time() < end:
            pass
        return call(infer, inputs)

    Batcher._call = staticmethod(slowed)  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit("usage: python -m bench.slowed MS LLMOS-ARGS...")
    slow_down(float(args[0]))
    return cli.main(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
