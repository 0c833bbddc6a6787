-- The revocation log (an outbox): every revocation event, written in the same transaction
-- as the change it describes, so every server sharing this database can apply it.
-- Ids come from the one-row counter below, taken as a transaction's last write and held
-- to its commit: they are gap-free and in commit order, so a reader that has applied
-- everything up to id N has missed nothing before N.
CREATE TABLE revocation_log (
    id          BIGINT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    origin      TEXT NOT NULL,       -- the server process that wrote it
    event       TEXT NOT NULL        -- the RevocationEvent as JSON
);

CREATE TABLE revocation_log_head (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    last_id     BIGINT NOT NULL
);
INSERT INTO revocation_log_head (one, last_id) VALUES (1, 0);
