//! The SQL, one text for both databases (`$n` parameters work on SQLite too).

pub const PING: &str = "SELECT 1";

/// First statement of every registry-changing transaction: takes the write lock and bumps the
/// counter other processes watch.
pub const BUMP_VERSION: &str =
    "UPDATE registry_version SET version = version + 1 WHERE id = 1 RETURNING version";
pub const GET_VERSION: &str = "SELECT version FROM registry_version WHERE id = 1";

#[cfg(test)]
const ACCOUNT_COLUMNS: &str =
    "id, issuer, subject, client_id, display_name, enabled, created_at, updated_at, created_by";

macro_rules! account_select {
    ($where:literal) => {
        concat!(
            "SELECT id, issuer, subject, client_id, display_name, enabled, created_at, updated_at, created_by FROM accounts ",
            $where
        )
    };
}

pub const INSERT_ACCOUNT: &str = "INSERT INTO accounts (id, issuer, subject, client_id, display_name, enabled, created_at, updated_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub const GET_ACCOUNT: &str = account_select!("WHERE id = $1");
pub const FIND_BY_SUBJECT: &str = account_select!("WHERE issuer = $1 AND subject = $2");
pub const FIND_BY_CLIENT_ID: &str = account_select!("WHERE issuer = $1 AND client_id = $2");
pub const LIST_ACCOUNTS: &str = account_select!("ORDER BY issuer, created_at, id");
pub const ACCOUNT_EXISTS: &str = "SELECT COUNT(*) FROM accounts WHERE id = $1";
pub const SET_ENABLED: &str = "UPDATE accounts SET enabled = $2, updated_at = $3 WHERE id = $1";
pub const TOUCH_ACCOUNT: &str = "UPDATE accounts SET updated_at = $2 WHERE id = $1";
pub const DELETE_ACCOUNT_ROLES: &str = "DELETE FROM account_roles WHERE account_id = $1";
pub const DELETE_ACCOUNT: &str = "DELETE FROM accounts WHERE id = $1";

pub const ROLES_OF: &str = "SELECT role FROM account_roles WHERE account_id = $1 ORDER BY role";
pub const ALL_ACCOUNT_ROLES: &str =
    "SELECT account_id, role FROM account_roles ORDER BY account_id, role";
pub const GRANT: &str =
    "INSERT INTO account_roles (account_id, role) VALUES ($1, $2) ON CONFLICT DO NOTHING";
pub const REVOKE: &str = "DELETE FROM account_roles WHERE account_id = $1 AND role = $2";

pub const UPSERT_ROLE: &str = "INSERT INTO roles (name, description, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET description = excluded.description";
pub const ROLE_EXISTS: &str = "SELECT COUNT(*) FROM roles WHERE name = $1";
pub const GET_ROLE: &str = "SELECT name, description FROM roles WHERE name = $1";
pub const LIST_ROLES: &str = "SELECT name, description FROM roles ORDER BY name";
pub const ROLE_PERMISSIONS: &str =
    "SELECT permission FROM role_permissions WHERE role = $1 ORDER BY permission";
pub const ALL_ROLE_PERMISSIONS: &str =
    "SELECT role, permission FROM role_permissions ORDER BY role, permission";
pub const CLEAR_ROLE_PERMISSIONS: &str = "DELETE FROM role_permissions WHERE role = $1";
pub const INSERT_ROLE_PERMISSION: &str =
    "INSERT INTO role_permissions (role, permission) VALUES ($1, $2)";
pub const ROLE_HOLDERS: &str = "SELECT COUNT(*) FROM account_roles WHERE role = $1";
pub const DELETE_ROLE_HOLDINGS: &str = "DELETE FROM account_roles WHERE role = $1";
pub const DELETE_ROLE: &str = "DELETE FROM roles WHERE name = $1";

pub const PERMISSIONS_OF: &str = "SELECT DISTINCT rp.permission FROM account_roles ar JOIN role_permissions rp ON rp.role = ar.role WHERE ar.account_id = $1";

/// The audit columns, in the order every insert binds them.
macro_rules! audit_columns {
    () => {
        "at, issuer, subject, client_id, principal_kind, method, path, rule, permissions_used, outcome, reason, instance, kind, username, action, object"
    };
}

/// Followed by `VALUES (...), (...)` (one group per row: the audit columns and `event_id`, built
/// by `QueryBuilder`) and [`INSERT_AUDIT_SUFFIX`].
pub const INSERT_AUDIT_PREFIX: &str =
    concat!("INSERT INTO audit_log (", audit_columns!(), ", event_id) ");
/// A row whose `event_id` is stored already is skipped (a replayed batch); NULL ids never
/// conflict.
pub const INSERT_AUDIT_SUFFIX: &str = " ON CONFLICT DO NOTHING";
/// One row (an admin change, inside the change's transaction).
pub const INSERT_AUDIT_ROW: &str = concat!(
    "INSERT INTO audit_log (",
    audit_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
);
/// `$1` principal (subject, username or client id), `$2` outcome, `$3` since (inclusive), `$4`
/// until (exclusive), `$5` limit, `$6` kind; a NULL filter matches everything.
pub const QUERY_AUDIT: &str = concat!(
    "SELECT id, ",
    audit_columns!(),
    " FROM audit_log WHERE ($1 IS NULL OR subject = $1 OR client_id = $1 OR username = $1) AND ($2 IS NULL OR outcome = $2) AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) AND ($6 IS NULL OR kind = $6) ORDER BY at DESC, id DESC LIMIT $5"
);

#[cfg(test)]
mod tests {
    #[test]
    fn account_select_lists_the_account_columns() {
        assert!(super::GET_ACCOUNT.contains(super::ACCOUNT_COLUMNS));
    }
}
