//! sqlx errors → tokenwarden errors. Messages name the operation and the database's own
//! classification; connection options (and so the password) are never formatted.

use crate::codes;
use tw_core::{Error, ErrorKind};

/// Maps a database failure during `op` ("create account", ...).
pub(crate) fn db(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| classify(op, e)
}

pub(crate) fn unavailable(op: &str, detail: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::StorageUnavailable,
        codes::STORAGE_UNAVAILABLE,
        format!("storage unavailable ({op}): {detail}"),
    )
    .with_retry_after(std::time::Duration::from_secs(1))
}

fn classify(op: &'static str, e: sqlx::Error) -> Error {
    use sqlx::Error as E;
    match &e {
        E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed
        | E::BeginFailed
        | E::Io(_)
        | E::Tls(_)
        | E::Protocol(_) => unavailable(op, &e),
        E::Database(d) if d.is_unique_violation() => Error::conflict(
            codes::STORAGE_CONFLICT,
            format!("{op}: conflicts with an existing row"),
        ),
        E::Database(d) if transient(d.as_ref()) => unavailable(op, &e),
        _ => Error::internal(codes::STORAGE_ERROR, format!("storage error ({op}): {e}")),
    }
    .with("operation", op)
}

/// SQLite busy/locked, PostgreSQL connection, resource, shutdown and serialisation failures.
/// PostgreSQL's SQLSTATEs are often all digits (`53100`, `40001`), so the backend is told by the
/// error's type, not by the shape of its code.
fn transient(d: &dyn sqlx::error::DatabaseError) -> bool {
    let Some(code) = d.code() else { return false };
    let postgres = d
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some();
    if postgres {
        return ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c));
    }
    // SQLITE_BUSY, SQLITE_LOCKED (+ extended codes)
    code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}
