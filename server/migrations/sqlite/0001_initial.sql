-- Sessions and their facts, as the first release made them.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_active REAL NOT NULL
);
CREATE INDEX sessions_by_last_active ON sessions (last_active);
CREATE TABLE facts (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    fact_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    type TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (session_id, fact_id)
);
