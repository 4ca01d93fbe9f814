-- tokenwarden token vault, SQLite. Same portable types as 0001 (TEXT, BIGINT epoch milliseconds),
-- BLOB for the sealed bytes.

-- One stored refresh or offline token, sealed with AES-256-GCM under `key_id` (associated data:
-- id, owner, token type). `version` is bumped by every token change: writers guard on it.
CREATE TABLE vault_entries (
    id            TEXT PRIMARY KEY NOT NULL,
    owner_issuer  TEXT NOT NULL,
    owner_subject TEXT NOT NULL,
    token_type    TEXT NOT NULL CHECK (token_type IN ('refresh', 'offline')),
    key_id        TEXT NOT NULL,
    nonce         BLOB NOT NULL,
    ciphertext    BLOB NOT NULL,
    session_id    TEXT,
    status        TEXT NOT NULL CHECK (status IN ('active', 'reconsent_required')),
    attributes    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    expires_at    BIGINT,
    version       BIGINT NOT NULL
);
CREATE INDEX vault_entries_owner ON vault_entries (owner_issuer, owner_subject);
CREATE INDEX vault_entries_session ON vault_entries (session_id);

-- A consent in progress, keyed by the nonce its signed `state` carries; taken exactly once.
CREATE TABLE vault_pending_consents (
    nonce           TEXT PRIMARY KEY NOT NULL,
    owner_issuer    TEXT NOT NULL,
    owner_subject   TEXT NOT NULL,
    key_id          TEXT NOT NULL,
    verifier_nonce  BLOB NOT NULL,
    verifier_sealed BLOB NOT NULL,
    attributes      TEXT NOT NULL,
    redirect_after  TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX vault_pending_consents_expires ON vault_pending_consents (expires_at);

-- A refresh in progress at some instance, per token lineage (a session id, else an entry id):
-- instances take the lease before refreshing so one spent-once refresh token is never presented
-- twice. A lease past `lease_until` is free again (its holder died).
CREATE TABLE vault_refresh_leases (
    lineage     TEXT PRIMARY KEY NOT NULL,
    lease_id    TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
