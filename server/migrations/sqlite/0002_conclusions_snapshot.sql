-- What the session last reported (see server.store.StoredConclusions): the JSON
-- document, the version it belongs to and the knowledge base that derived it.
-- All NULL for none.
ALTER TABLE sessions ADD COLUMN conclusions TEXT;
ALTER TABLE sessions ADD COLUMN conclusions_version INTEGER;
ALTER TABLE sessions ADD COLUMN conclusions_kb_version TEXT;
