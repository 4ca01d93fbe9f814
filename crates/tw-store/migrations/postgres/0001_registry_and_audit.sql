-- tokenwarden storage, PostgreSQL. Portable types: TEXT, BIGINT epoch milliseconds, 0/1 flags.

CREATE TABLE accounts (
    id           TEXT PRIMARY KEY NOT NULL,
    issuer       TEXT NOT NULL,
    subject      TEXT,
    client_id    TEXT,
    display_name TEXT,
    enabled      BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL,
    CHECK (subject IS NOT NULL OR client_id IS NOT NULL)
);
CREATE UNIQUE INDEX accounts_issuer_subject ON accounts (issuer, subject) WHERE subject IS NOT NULL;
CREATE UNIQUE INDEX accounts_issuer_client_id ON accounts (issuer, client_id) WHERE client_id IS NOT NULL;

CREATE TABLE roles (
    name        TEXT PRIMARY KEY NOT NULL,
    description TEXT,
    created_at  BIGINT NOT NULL
);

CREATE TABLE role_permissions (
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (role, permission)
);

CREATE TABLE account_roles (
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    role       TEXT NOT NULL REFERENCES roles (name) ON DELETE CASCADE,
    PRIMARY KEY (account_id, role)
);
CREATE INDEX account_roles_role ON account_roles (role);

CREATE TABLE audit_log (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at               BIGINT NOT NULL,
    issuer           TEXT NOT NULL,
    subject          TEXT,
    client_id        TEXT,
    principal_kind   TEXT NOT NULL,
    method           TEXT NOT NULL,
    path             TEXT NOT NULL,
    rule             TEXT,
    permissions_used TEXT NOT NULL,
    outcome          TEXT NOT NULL,
    reason           TEXT,
    instance         TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_subject_at ON audit_log (subject, at);
CREATE INDEX audit_log_client_id_at ON audit_log (client_id, at);
CREATE INDEX audit_log_outcome_at ON audit_log (outcome, at);

-- One row, bumped by every registry change; a trigger NOTIFYs listeners (other instances).
CREATE TABLE registry_version (
    id      BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);

CREATE FUNCTION tw_registry_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('tw_registry', NEW.version::text);
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER registry_version_notify
    AFTER UPDATE ON registry_version
    FOR EACH ROW EXECUTE FUNCTION tw_registry_notify();
