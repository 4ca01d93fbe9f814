//! Parsing shared by the admin API and the CLI: audit filters and time bounds.

use std::time::UNIX_EPOCH;
use tw_core::{Error, UnixTime};
use tw_store::{AuditKind, AuditOutcome, AuditQuery};

/// A time bound: a duration back from `now` (`90s`, `15m`, `1h`, `2days`) or an RFC 3339 time
/// (`2026-11-22T07:00:00Z`). `what` names the parameter in the error (400 `invalid_time`).
pub fn parse_time_bound(what: &str, value: &str, now: UnixTime) -> Result<UnixTime, Error> {
    let value = value.trim();
    if let Ok(d) = humantime::parse_duration(value) {
        return Ok(now.minus(d));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(value) {
        let ms = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
        };
        return Ok(UnixTime::from_millis(ms));
    }
    Err(Error::bad_request(
        "invalid_time",
        format!(
            "`{what}` must be a duration back from now (e.g. 1h, 30m, 2days) or an RFC 3339 time (e.g. 2026-11-22T07:00:00Z), not `{}`",
            clip(value)
        ),
    )
    .with("parameter", what.to_owned()))
}

/// `allow`, `deny`, `dry_run_deny` or `rate_limited` (400 `invalid_outcome` otherwise).
pub fn parse_outcome(value: &str) -> Result<AuditOutcome, Error> {
    match value {
        "allow" => Ok(AuditOutcome::Allow),
        "deny" => Ok(AuditOutcome::Deny),
        "dry_run_deny" => Ok(AuditOutcome::DryRunDeny),
        "rate_limited" => Ok(AuditOutcome::RateLimited),
        other => Err(Error::bad_request(
            "invalid_outcome",
            format!(
                "`outcome` must be allow, deny, dry_run_deny or rate_limited, not `{}`",
                clip(other)
            ),
        )),
    }
}

/// `decision` or `admin` (400 `invalid_kind` otherwise).
pub fn parse_kind(value: &str) -> Result<AuditKind, Error> {
    match value {
        "decision" => Ok(AuditKind::Decision),
        "admin" => Ok(AuditKind::Admin),
        other => Err(Error::bad_request(
            "invalid_kind",
            format!("`kind` must be decision or admin, not `{}`", clip(other)),
        )),
    }
}

/// A limit: a positive integer (the store enforces the upper bound).
pub fn parse_limit(value: &str) -> Result<u32, Error> {
    value.trim().parse::<u32>().map_err(|_| {
        Error::bad_request(
            "invalid_limit",
            format!("`limit` must be a positive integer, not `{}`", clip(value)),
        )
    })
}

/// The audit filters from `(name, value)` pairs (a query string). Unknown names are refused.
pub fn audit_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    now: UnixTime,
) -> Result<AuditQuery, Error> {
    let mut q = AuditQuery::default();
    for (name, value) in pairs {
        if value.is_empty() {
            continue;
        }
        match name {
            "principal" => q.principal = Some(value.to_owned()),
            "outcome" => q.outcome = Some(parse_outcome(value)?),
            "kind" => q.kind = Some(parse_kind(value)?),
            "since" => q.since = Some(parse_time_bound("since", value, now)?),
            "until" => q.until = Some(parse_time_bound("until", value, now)?),
            "limit" => q.limit = Some(parse_limit(value)?),
            other => {
                return Err(Error::bad_request(
                    "invalid_parameter",
                    format!(
                        "unknown query parameter `{}`; use principal, kind, outcome, since, until, limit",
                        clip(other)
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// At most 64 characters of caller input, escaped, for messages.
pub(crate) fn clip(s: &str) -> String {
    tw_core::text::terminal_cell(s, 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds() {
        let now = UnixTime::from_secs(1_800_000_000);
        assert_eq!(
            parse_time_bound("since", "1h", now)
                .map(UnixTime::as_secs)
                .ok(),
            Some(1_800_000_000 - 3600)
        );
        assert_eq!(
            parse_time_bound("since", "1970-01-01T00:01:00Z", now)
                .map(UnixTime::as_secs)
                .ok(),
            Some(60)
        );
        let e = parse_time_bound("since", "yesterday-ish", now).err();
        assert_eq!(e.map(|e| e.code()), Some("invalid_time"));
    }

    #[test]
    fn query_pairs() {
        let now = UnixTime::from_secs(0);
        let q = audit_query(
            [("principal", "svc"), ("outcome", "deny"), ("limit", "5")],
            now,
        );
        let q = q.ok().unwrap_or_default();
        assert_eq!(q.principal.as_deref(), Some("svc"));
        assert_eq!(q.outcome, Some(AuditOutcome::Deny));
        assert_eq!(q.limit, Some(5));
        assert!(audit_query([("outcome", "maybe")], now).is_err());
        assert!(audit_query([("limit", "-1")], now).is_err());
        assert!(audit_query([("colour", "red")], now).is_err());
        let q = audit_query([("kind", "admin")], now)
            .ok()
            .unwrap_or_default();
        assert_eq!(q.kind, Some(AuditKind::Admin));
        let e = audit_query([("kind", "\u{1b}[2Jadmin")], now).err();
        assert_eq!(e.as_ref().map(|e| e.code()), Some("invalid_kind"));
        assert!(
            !e.map(|e| e.to_string())
                .unwrap_or_default()
                .contains('\u{1b}')
        );
    }
}
