-- tokenwarden audit log: a decision's unique id (given by the gateway's audit queue), so that a
-- batch replayed from the gateway's local spool after a crash is stored once. Admin rows have
-- none (NULLs never conflict).
ALTER TABLE audit_log ADD COLUMN event_id TEXT;
CREATE UNIQUE INDEX audit_log_event_id ON audit_log (event_id);
