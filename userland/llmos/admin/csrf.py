"""CSRF protection by synchronizer token (pure).

Every session carries a random token. A request that may change state (any method but
GET, HEAD, OPTIONS) must send it back, in the ``X-CSRF-Token`` header (the JavaScript
client) or the ``csrf_token`` form field (plain HTML forms); it is compared in constant
time. The session cookie is also ``SameSite=Strict``: two independent defences.
"""

from __future__ import annotations

import hmac

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADER = "X-CSRF-Token"
FORM_FIELD = "csrf_token"


def changes_state(method: str) -> bool:
    return method.upper() not in SAFE_METHODS


def token_matches(expected: str, supplied: str | None) -> bool:
    if not supplied or not expected:
        return False
    return hmac.compare_digest(expected.encode(), supplied.encode())
