-- Tickets: exactly one per incident, its comments, and each sink's id for it.
CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY,
    incident_id      INTEGER NOT NULL UNIQUE REFERENCES incidents(id),  -- never two per incident
    fingerprint      TEXT NOT NULL UNIQUE,   -- found again in help desks (Jira label, Message-ID)
    status           TEXT NOT NULL,          -- open | acknowledged | resolved | closed
    priority         TEXT NOT NULL,          -- P1..P4, current
    worst_priority   TEXT NOT NULL,          -- the highest reached; decides the RFO
    title            TEXT NOT NULL,
    description      TEXT NOT NULL,
    facts            TEXT NOT NULL DEFAULT '{}',  -- JSON: site, customer, partner, PBX …
    plan             TEXT,                   -- support plan name (NULL: defaults)
    opened_at        REAL NOT NULL,
    response_due     REAL,
    resolve_due      REAL,
    responded_at     REAL,                   -- first acknowledgement
    resolved_at      REAL,
    closed_at        REAL,
    rfo_due          REAL,                   -- set at resolve for priorities that owe an RFO
    rfo_delivered_at REAL,
    rfo_delivered_by TEXT,
    seq              INTEGER NOT NULL DEFAULT 0,  -- number of the last operation (comment)
    updated_at       REAL NOT NULL
);
CREATE INDEX tickets_status ON tickets(status, priority);
CREATE INDEX tickets_rfo ON tickets(rfo_due) WHERE rfo_delivered_at IS NULL;

CREATE TABLE ticket_comments (
    ticket_id  INTEGER NOT NULL REFERENCES tickets(id),
    seq        INTEGER NOT NULL,
    at         REAL NOT NULL,
    kind       TEXT NOT NULL,                -- opened, severity, members, acknowledged, resolved, note, closed
    author     TEXT NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (ticket_id, seq)
);

CREATE TABLE ticket_sinks (
    ticket_id    INTEGER NOT NULL REFERENCES tickets(id),
    sink         TEXT NOT NULL,              -- sink name from the config
    provider_id  TEXT NOT NULL,              -- Jira key, root Message-ID, receiver's id
    updated_at   REAL NOT NULL,
    PRIMARY KEY (ticket_id, sink)
);
