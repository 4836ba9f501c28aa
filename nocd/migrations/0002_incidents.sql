-- Incidents, their members, timeline and the transactional outbox.
CREATE TABLE incidents (
    id           INTEGER PRIMARY KEY,
    code         TEXT NOT NULL UNIQUE,      -- short code people type in SMS replies (K7Q)
    group_key    TEXT NOT NULL,             -- e.g. site:main-street
    site         TEXT,
    customer     TEXT,
    severity     TEXT NOT NULL,             -- critical | degraded | low | unknown
    state        TEXT NOT NULL,             -- triggered | acknowledged | resolved
    title        TEXT NOT NULL,
    cause        TEXT,                      -- the parent check when children are unreachable
    opened_at    REAL NOT NULL,
    acked_at     REAL,
    acked_by     TEXT,
    resolved_at  REAL,
    resolved_by  TEXT,
    suppressed   TEXT                       -- maintenance/silence name when opened inside one
);
-- At most one open incident per group: the database itself refuses a duplicate.
CREATE UNIQUE INDEX incidents_open_group ON incidents(group_key) WHERE state != 'resolved';
CREATE INDEX incidents_state ON incidents(state, severity);

CREATE TABLE incident_members (
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    check_name   TEXT NOT NULL,
    severity     TEXT NOT NULL,
    failure      TEXT NOT NULL,
    reason       TEXT NOT NULL,
    since        REAL NOT NULL,
    recovered_at REAL,
    PRIMARY KEY (incident_id, check_name)
);

CREATE TABLE timeline (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    at           REAL NOT NULL,
    kind         TEXT NOT NULL,             -- opened, severity, member, page, delivery, ack, ticket, note, resolved …
    text         TEXT NOT NULL,
    data         TEXT NOT NULL DEFAULT '{}' -- JSON
);
CREATE INDEX timeline_incident ON timeline(incident_id, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    key             TEXT NOT NULL UNIQUE,   -- idempotency key: incident + operation
    kind            TEXT NOT NULL,          -- handler name, e.g. ticket:webhook, notify
    payload         TEXT NOT NULL,          -- JSON
    incident_id     INTEGER,
    state           TEXT NOT NULL DEFAULT 'pending',  -- pending | sending | done | failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    not_before      REAL NOT NULL,
    created_at      REAL NOT NULL,
    done_at         REAL,
    provider_id     TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox(state, not_before);

CREATE TABLE silences (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    matcher     TEXT NOT NULL,              -- JSON of MaintenanceMatch
    starts_at   REAL NOT NULL,
    ends_at     REAL NOT NULL,
    created_by  TEXT NOT NULL,
    comment     TEXT NOT NULL DEFAULT '',
    public      INTEGER NOT NULL DEFAULT 0,
    expired_at  REAL
);
