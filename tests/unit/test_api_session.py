"""Dashboard sessions: opaque ids, expiry, revocation when a reload removes a token's scope."""

from __future__ import annotations

from nocd.web.auth import Principal
from nocd.web.session import MAX_SESSIONS, Sessions, same


def test_sessions_expire_and_end_when_their_token_goes() -> None:
    now = [0.0]
    sessions = Sessions(lambda: now[0], ttl=100)
    ops = sessions.create(Principal("ops", frozenset({"read", "write"})))
    viewer = sessions.create(Principal("viewer", frozenset({"read"})))
    assert sessions.get(ops.id) is ops and sessions.get("guess") is None
    # A reload that drops ops's write scope ends its session; viewer keeps watching.
    assert sessions.retain({"ops": frozenset({"read"}), "viewer": frozenset({"read"})}) == 1
    assert sessions.get(ops.id) is None and sessions.get(viewer.id) is viewer
    now[0] = 100.0
    assert sessions.get(viewer.id) is None
    assert len(sessions) == 0


def test_the_oldest_sessions_go_first_beyond_the_bound() -> None:
    sessions = Sessions(lambda: 0.0)
    first = sessions.create(Principal("ops", frozenset({"read"})))
    for _ in range(MAX_SESSIONS):
        sessions.create(Principal("ops", frozenset({"read"})))
    assert len(sessions) == MAX_SESSIONS and sessions.get(first.id) is None


def test_csrf_comparison() -> None:
    assert same("abc", "abc")
    assert not same("abc", "abd") and not same("", "") and not same(None, "x")
