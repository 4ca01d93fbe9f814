//! Audit decisions the outage tests write, and the rows they read back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::START;
use tw_authz::{AuditEvent, AuditOutcome};
use tw_store::{AuditKind, AuditQuery, Store};

/// Decision `n`: its subject (`s00042`) says which one it was, so order and duplicates show.
pub fn decision(n: usize, outcome: AuditOutcome) -> AuditEvent {
    let reason = match outcome {
        AuditOutcome::Allow => "allowed",
        _ => "insufficient_scope",
    };
    AuditEvent {
        id: None,
        // One time for all: the audit query's order is then the insertion order.
        time: START,
        principal: format!("user:u{n}"),
        issuer: "https://kc.example/realms/dls".into(),
        subject: Some(format!("s{n:05}")),
        client_id: Some("web".into()),
        method: "GET".into(),
        path: Some("/api/events".into()),
        rule: Some("events-read".into()),
        permissions: vec!["events:read".into()],
        outcome,
        reason: reason.into(),
    }
}

/// The stored decisions' subjects, oldest first.
pub async fn stored(store: &Store) -> Vec<String> {
    let mut rows = store
        .query_audit(&AuditQuery {
            kind: Some(AuditKind::Decision),
            limit: Some(tw_store::AUDIT_MAX_LIMIT),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows.into_iter().map(|r| r.subject.unwrap()).collect()
}
