-- Sessions, their facts and what each last reported, as SQLite's schema
-- version 2 (server/migrations/sqlite): no PostgreSQL database predates the
-- conclusions snapshot. Times are seconds since the epoch, as the service
-- passes them; `fields` and `conclusions` are JSON text the store never reads.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    version BIGINT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    last_active DOUBLE PRECISION NOT NULL,
    conclusions TEXT,
    conclusions_version BIGINT,
    conclusions_kb_version TEXT
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
