"""What anonymous callers of the inference API may see of the server's own state.

/health and the readiness routes answer anyone who reaches the port; their reasons come
from the vault, the registry and tools (systemd-creds, onnxruntime), and name files
(``/var/lib/llmos/fleet-key.tpm2``, a pack's path). Here a path becomes its last
component and the key's file is left out; the admin page (authenticated) shows it all.
"""

from __future__ import annotations

import re
from typing import Any

_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+([\w.@+-]+)")


def text(s: str) -> str:
    """``s`` with absolute paths cut to their file name and only its first line."""
    first = s.splitlines()[0] if s else s
    return _PATH.sub(r"\1", first)


def health(doc: dict[str, Any]) -> dict[str, Any]:
    """``Health.to_dict()`` for anonymous callers."""
    out = dict(doc)
    out["reasons"] = [text(r) for r in doc.get("reasons", [])]
    if isinstance(doc.get("key"), dict):
        key = {k: v for k, v in doc["key"].items() if k != "path"}
        if isinstance(key.get("reason"), str):
            key["reason"] = text(key["reason"])
        out["key"] = key
    if isinstance(doc.get("models"), dict):
        out["models"] = {name: {**m, "reason": text(m["reason"])}
                         if isinstance(m, dict) and isinstance(m.get("reason"), str) else m
                         for name, m in doc["models"].items()}
    return out
