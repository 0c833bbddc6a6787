-- Which event holds each place in the revocation log: a random tag written with the
-- event. A node remembers the tag of the last event it applied and compares it with the
-- log at every read, so a log that went back (a failover to a replica that lacks the
-- last commits, a restore from a backup) and reused ids is noticed, not trusted.
-- Expand only: a release before tags writes no tag (NULL), which readers accept as
-- "cannot compare".
ALTER TABLE revocation_log ADD COLUMN tag TEXT;
