"""Parsers of setting values (``llmos.config``'s table): each takes what TOML, the
environment or a flag gave and returns the value, or raises ValueError saying why."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def boolean(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {v!r}")


def optional_boolean(v: Any) -> bool | None:
    return None if v in (None, "") else boolean(v)


TLS_PROVISIONED = "provisioned"  # server.tls: HTTPS once a certificate is given (llmos.tls)


def tls_mode(v: Any) -> bool | str:
    return TLS_PROVISIONED if str(v).strip().lower() == TLS_PROVISIONED else boolean(v)


def one_of(*options: str) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        if str(v) not in options:
            raise ValueError(f"{v!r} is not one of {', '.join(options)}")
        return str(v)

    return parse


def positive(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(v: Any) -> Any:
        x = kind(v)
        if x <= 0:
            raise ValueError(f"must be > 0, got {v!r}")
        return x

    return parse


def non_negative(kind: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(v: Any) -> Any:
        x = kind(v)
        if x < 0:
            raise ValueError(f"must be >= 0, got {v!r}")
        return x

    return parse


def int_range(low: int, high: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        x = int(v)
        if not low <= x <= high:
            raise ValueError(f"must be {low}..{high}, got {v!r}")
        return x

    return parse


def optional_positive_float(v: Any) -> float | None:
    return None if v in (None, "") else float(positive(float)(v))


def path_value(v: Any) -> Path:
    return Path(str(v))


def optional_path_value(v: Any) -> Path | None:
    return None if v in (None, "") else Path(str(v))
