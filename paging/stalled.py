"""Channel fallback for pages the provider keeps refusing to create (a partial outage).

The status-callback fallback (paging.tracking) needs a call or message to exist; when one
API (say Twilio voice) answers only retryable errors while the other works, the page retries
for as long as the outage lasts and nobody is reached. So a page not yet created
`channel_fallback_after` after its first attempt gets the same fallback page (same `.fb`
key: at most one per page, whichever path records it first), while it keeps retrying.
Runs inside the paging loop's transaction; the fallback goes out through the outbox.
"""

from __future__ import annotations

import aiosqlite

from nocd.incidents.timeline import add_event
from paging.config import PagingConfig
from paging.tracking import fallback, load_page


async def stalled_pages(
    conn: aiosqlite.Connection, paging: PagingConfig, now: float
) -> list[tuple[str, float, str | None]]:
    """(key, first attempt, last error) of pages not created `channel_fallback_after` after
    their first attempt and still being retried; fallback pages themselves are left out."""
    # Driven from the outbox's few undelivered rows (indexed by state), not a scan of every
    # page ever sent. `status='queued'` with no provider id: never created (a permanent
    # failure, a cancel or a send all change the status).
    async with conn.execute(
        "SELECT p.key, p.first_attempt_at, o.last_error FROM outbox o "
        "JOIN paging_pages p ON p.key = o.key "
        "WHERE o.state IN ('pending', 'sending') AND o.kind = 'notify' "
        "AND p.status = 'queued' AND p.provider_id IS NULL "
        "AND p.first_attempt_at IS NOT NULL AND p.first_attempt_at <= ? "
        "AND p.key NOT LIKE '%.fb' ORDER BY p.first_attempt_at, p.key",
        (now - paging.channel_fallback_after,),
    ) as cur:
        return [(str(r[0]), float(r[1]), r[2]) for r in await cur.fetchall()]


async def fall_back_stalled(
    conn: aiosqlite.Connection, paging: PagingConfig, now: float, skip: frozenset[str]
) -> tuple[int, frozenset[str]]:
    """Record the channel fallback of each stalled page not in `skip`; returns (fallback
    pages recorded, keys to skip next time).

    `skip` is the caller's memory of pages already handled (kept only after its transaction
    commits): it saves re-examining them every second. Forgetting it (a restart) is safe,
    since the fallback's key makes a second recording a no-op.
    """
    if not paging.channel_fallback:
        return 0, frozenset()
    stalled = await stalled_pages(conn, paging, now)
    made = 0
    for key, first, error in stalled:
        if key in skip:
            continue
        rec = await load_page(conn, key)
        if rec is None or not await fallback(conn, paging, rec, now):
            continue  # the other channel is already paged, no number, incident over, …
        verb = "call" if rec.channel == "voice" else "SMS"
        text = (
            f"{verb} to {rec.person} still not placed {int(now - first)}s after the first "
            f"attempt ({error or 'in progress'}): paged on the other channel too; "
            f"the {verb} keeps retrying"
        )
        for i in rec.incident_ids:
            await add_event(conn, i, now, "page", text, {"key": key, "error": True})
        made += 1
    return made, frozenset(k for k, _, _ in stalled)
