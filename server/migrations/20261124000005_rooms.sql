-- Rooms as records (issue 11): a room's definition lives here, so its id is stable across
-- restarts and every node of a deployment lists the same rooms. Its game state lives in
-- the memory of the one node that runs it (see server/src/game/).

CREATE TABLE rooms (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    capacity     BIGINT NOT NULL,
    created_by   TEXT,                 -- a user id; NULL: the server's own room (never expires)
    created_at   BIGINT NOT NULL,
    empty_since  BIGINT                -- when its last player left; NULL while it may be in use
);
CREATE INDEX rooms_created_by ON rooms(created_by);

-- How many rooms exist, kept in the transactions that add and remove them: the one row
-- every creation updates (`n < max`) is what makes the deployment-wide cap race-free.
CREATE TABLE room_count (
    id  INTEGER PRIMARY KEY,
    n   BIGINT NOT NULL
);
INSERT INTO room_count (id, n) VALUES (1, 0);
