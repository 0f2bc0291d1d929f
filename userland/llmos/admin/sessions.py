"""Server-side sessions of the admin console (pure: the clock is passed in).

A browser holds only a random session id in a cookie; everything else stays here. A
session is either *anonymous* (made when the login form is shown: it carries the CSRF
token the form posts back) or *authenticated* (made at login, with a fresh id, so an id
planted before login is worthless). Each carries its own CSRF token.

Expiry: an authenticated session ends after ``idle_s`` without a request, or ``max_s``
after login, whichever comes first; an anonymous one after ``anonymous_s``. The store is
bounded: when full, expired sessions go first, then the oldest anonymous ones, then the
oldest overall. Restarting the server ends every session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 30 * 60.0
    max_s: float = 12 * 3600.0
    anonymous_s: float = 15 * 60.0
    max_sessions: int = 1000


@dataclass(frozen=True)
class Session:
    id: str
    csrf: str
    authenticated: bool
    created: float
    last_seen: float

    def expires(self, policy: SessionPolicy) -> float:
        if not self.authenticated:
            return self.created + policy.anonymous_s
        return min(self.last_seen + policy.idle_s, self.created + policy.max_s)

    def expired(self, now: float, policy: SessionPolicy) -> bool:
        return now >= self.expires(policy)


class SessionStore:
    def __init__(self, policy: SessionPolicy = SessionPolicy()) -> None:
        self.policy = policy
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def _make_room(self, now: float) -> None:
        self.purge(now)
        while len(self._sessions) >= self.policy.max_sessions:
            victim = min(self._sessions.values(),
                         key=lambda s: (s.authenticated, s.last_seen))
            del self._sessions[victim.id]

    def create(self, now: float, *, authenticated: bool) -> Session:
        self._make_room(now)
        session = Session(new_token(), new_token(), authenticated, now, now)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None, now: float) -> Session | None:
        """The live session with this id (its idle clock restarted), or None."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if session.expired(now, self.policy):
            del self._sessions[session_id]
            return None
        if session.authenticated:
            session = replace(session, last_seen=now)
            self._sessions[session_id] = session
        return session

    def login(self, previous: str | None, now: float) -> Session:
        """End ``previous`` (if any) and start an authenticated session with a new id."""
        self.drop(previous)
        return self.create(now, authenticated=True)

    def drop(self, session_id: str | None) -> None:
        if session_id:
            self._sessions.pop(session_id, None)

    def drop_authenticated(self) -> int:
        """End every logged-in session (the password changed); how many were ended."""
        ids = [s.id for s in self._sessions.values() if s.authenticated]
        for sid in ids:
            del self._sessions[sid]
        return len(ids)

    def purge(self, now: float) -> int:
        dead = [s.id for s in self._sessions.values() if s.expired(now, self.policy)]
        for sid in dead:
            del self._sessions[sid]
        return len(dead)
