-- tokenwarden audit log: admin changes are audited next to the gateway's decisions. `kind` says
-- which a row is; an admin row names the person (`subject`, `username`) and the client, the
-- change (`action`: account.create, role.put, ...) and its `object` (account id or role name).
ALTER TABLE audit_log ADD COLUMN kind TEXT NOT NULL DEFAULT 'decision';
ALTER TABLE audit_log ADD COLUMN username TEXT;
ALTER TABLE audit_log ADD COLUMN action TEXT;
ALTER TABLE audit_log ADD COLUMN object TEXT;
CREATE INDEX audit_log_kind_at ON audit_log (kind, at);
CREATE INDEX audit_log_username_at ON audit_log (username, at);
