-- The session an admin ended (`end_session` entries); NULL for every other action.
ALTER TABLE admin_audit ADD COLUMN session_id TEXT;
