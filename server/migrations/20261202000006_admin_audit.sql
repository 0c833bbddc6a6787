-- Who banned whom (NULL for bans made before this column, or by no admin).
ALTER TABLE bans ADD COLUMN banned_by TEXT;

-- Every admin action (kick, ban, unban, role change), written in the action's own
-- transaction: an action that committed is in the log, one that did not is not.
CREATE TABLE admin_audit (
    id                 TEXT PRIMARY KEY,
    at                 BIGINT NOT NULL,
    admin_id           TEXT NOT NULL,
    admin_name         TEXT NOT NULL,
    action             TEXT NOT NULL,             -- kick | ban | unban | role
    target_id          TEXT NOT NULL,
    target_name        TEXT NOT NULL,
    reason             TEXT,
    banned_until       BIGINT,                    -- a timed ban's end (NULL: permanent, or not a ban)
    role               TEXT                       -- a role change's new role
);
CREATE INDEX admin_audit_at ON admin_audit(at);
CREATE INDEX admin_audit_target ON admin_audit(target_id, at);
