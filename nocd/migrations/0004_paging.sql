-- Paging: escalation state with persisted deadlines, rate-cap queue, sent pages, digests.
CREATE TABLE paging_escalations (
    incident_id   INTEGER PRIMARY KEY REFERENCES incidents(id),
    policy        TEXT NOT NULL,
    step          INTEGER NOT NULL,         -- index of the next step to fire; len(steps) = end of pass
    repeat        INTEGER NOT NULL,         -- current pass through the policy, 0-based
    next_fire_at  REAL NOT NULL,            -- epoch seconds: a restart or clock jump neither skips nor doubles
    state         TEXT NOT NULL,            -- active | stopped | exhausted
    started_at    REAL NOT NULL,
    updated_at    REAL NOT NULL,
    stop_reason   TEXT
);
CREATE INDEX paging_escalations_due ON paging_escalations(state, next_fire_at);

-- Notifications waiting for the recipient's rate cap; released together as one bundle.
CREATE TABLE paging_queue (
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    step         INTEGER NOT NULL,
    repeat       INTEGER NOT NULL,
    person       TEXT NOT NULL,
    channel      TEXT NOT NULL,             -- voice | sms
    queued_at    REAL NOT NULL,
    held_noted   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (incident_id, step, repeat, person, channel)
);

-- Every notification enqueued (one outbox row each, same key), and what became of it.
CREATE TABLE paging_pages (
    key              TEXT PRIMARY KEY,      -- = outbox key; also the webhook path segment
    person           TEXT,
    channel          TEXT NOT NULL,
    number           TEXT NOT NULL,
    text             TEXT NOT NULL,         -- what is spoken / texted
    step             INTEGER,
    repeat           INTEGER,
    created_at       REAL NOT NULL,
    first_attempt_at REAL,
    provider_id      TEXT,
    status           TEXT NOT NULL DEFAULT 'queued',
    updated_at       REAL NOT NULL,
    redials          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX paging_pages_person ON paging_pages(person, channel, created_at);
CREATE INDEX paging_pages_provider ON paging_pages(provider_id);

CREATE TABLE paging_page_incidents (
    key          TEXT NOT NULL REFERENCES paging_pages(key),
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    PRIMARY KEY (key, incident_id)
);
CREATE INDEX paging_page_incidents_incident ON paging_page_incidents(incident_id);

-- Degraded incidents raised outside support hours, held for the digest at next opening.
CREATE TABLE paging_digest (
    incident_id  INTEGER PRIMARY KEY REFERENCES incidents(id),
    route        TEXT NOT NULL,
    due_at       REAL NOT NULL,
    recipients   TEXT NOT NULL,             -- JSON list of person keys
    state        TEXT NOT NULL,             -- held | sent | dropped
    held_at      REAL NOT NULL,
    done_at      REAL,
    digest_key   TEXT
);
CREATE INDEX paging_digest_due ON paging_digest(state, due_at);

-- Webhook actions already applied, so a replayed (validly signed) request changes nothing.
CREATE TABLE paging_webhook_seen (
    id      TEXT PRIMARY KEY,
    at      REAL NOT NULL,
    reply   TEXT NOT NULL
);
