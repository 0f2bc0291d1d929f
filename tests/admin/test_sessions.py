"""Server-side sessions: expiry (idle, absolute, anonymous), rotation at login, bounds."""

from __future__ import annotations

from llmos.admin import csrf
from llmos.admin.sessions import SessionPolicy, SessionStore

POLICY = SessionPolicy(idle_s=100, max_s=1000, anonymous_s=50, max_sessions=4)


def test_authenticated_session_lives_while_used_then_idles_out() -> None:
    store = SessionStore(POLICY)
    s = store.create(0, authenticated=True)
    assert store.get(s.id, 90) is not None
    assert store.get(s.id, 180) is not None  # 90 s after the last use
    assert store.get(s.id, 281) is None  # 101 s idle
    assert store.get(s.id, 282) is None and len(store) == 0


def test_absolute_lifetime_ends_even_a_busy_session() -> None:
    store = SessionStore(POLICY)
    s = store.create(0, authenticated=True)
    for t in range(50, 1000, 50):
        assert store.get(s.id, t) is not None
    assert store.get(s.id, 1000) is None


def test_anonymous_sessions_expire_from_creation() -> None:
    store = SessionStore(POLICY)
    s = store.create(0, authenticated=False)
    assert store.get(s.id, 49) is not None
    assert store.get(s.id, 50) is None


def test_login_rotates_the_id_and_the_csrf_token() -> None:
    store = SessionStore(POLICY)
    anon = store.create(0, authenticated=False)
    user = store.login(anon.id, 1)
    assert user.authenticated and user.id != anon.id and user.csrf != anon.csrf
    assert store.get(anon.id, 2) is None


def test_unknown_and_empty_ids_are_no_session() -> None:
    store = SessionStore(POLICY)
    store.create(0, authenticated=True)
    assert store.get(None, 1) is None
    assert store.get("", 1) is None
    assert store.get("not-a-session", 1) is None


def test_the_store_is_bounded_and_evicts_anonymous_sessions_first() -> None:
    store = SessionStore(POLICY)
    users = [store.create(t, authenticated=True) for t in range(2)]
    for t in range(2, 10):
        store.create(t, authenticated=False)
    assert len(store) == 4
    assert all(store.get(u.id, 10) is not None for u in users)


def test_password_change_ends_logged_in_sessions_only() -> None:
    store = SessionStore(POLICY)
    user = store.create(0, authenticated=True)
    anon = store.create(0, authenticated=False)
    assert store.drop_authenticated() == 1
    assert store.get(user.id, 1) is None and store.get(anon.id, 1) is not None


def test_tokens_are_long_random_and_distinct() -> None:
    store = SessionStore(POLICY)
    a, b = store.create(0, authenticated=True), store.create(0, authenticated=True)
    assert len({a.id, a.csrf, b.id, b.csrf}) == 4
    assert min(len(a.id), len(a.csrf)) >= 40


def test_csrf_token_check() -> None:
    assert csrf.token_matches("abc", "abc")
    assert not csrf.token_matches("abc", "abd")
    assert not csrf.token_matches("abc", None)
    assert not csrf.token_matches("abc", "")
    assert not csrf.token_matches("", "")
    assert csrf.changes_state("POST") and csrf.changes_state("delete")
    assert not csrf.changes_state("GET") and not csrf.changes_state("HEAD")
