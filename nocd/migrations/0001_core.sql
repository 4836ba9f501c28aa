-- Check state that must survive a restart (soft/hard state, counters, flap history).
CREATE TABLE check_state (
    check_name  TEXT PRIMARY KEY,
    state       TEXT NOT NULL,          -- JSON of nocd.state.CheckState
    updated_at  REAL NOT NULL
);
