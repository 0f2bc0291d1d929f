"""The device a model runs on, parsed from its config (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from llmos.errors import ModelLoadError


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu" or "cuda"
    index: int = 0

    def __str__(self) -> str:
        return self.kind if self.kind == "cpu" else f"cuda:{self.index}"


def parse_device(text: str) -> Device:
    """``cpu``, ``cuda`` or ``cuda:N``; anything else is refused."""
    if text == "cpu":
        return Device("cpu")
    kind, _, index = text.partition(":")
    if kind == "cuda" and (index == "" or index.isdigit()):
        return Device("cuda", int(index or 0))
    raise ModelLoadError(f"unknown device {text!r}", "use cpu, cuda or cuda:N")
