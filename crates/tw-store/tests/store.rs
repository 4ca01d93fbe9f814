//! The storage scenarios, each on SQLite and on a real PostgreSQL.

// Scenarios are plain async fns run by the #[tokio::test]s that `both!` generates, so clippy's
// allowance for #[test] fns does not reach them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{START, Target};
use std::collections::BTreeSet;
use std::time::Duration;
use tw_authz::{AccountKey, RegistrySource};
use tw_core::{ErrorKind, UnixTime};
use tw_store::{
    AdminActor, AuditKind, AuditOutcome, AuditQuery, AuditRecord, Backend, NewAccount,
    PrincipalKind, Store,
};

const ISS: &str = "https://kc.example/realms/dls";
const OTHER_ISS: &str = "https://kc.example/realms/other";

fn codes(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn assert_err<T: std::fmt::Debug>(r: tw_core::Result<T>, code: &str, status: u16) {
    let e = r.expect_err("expected an error");
    assert_eq!(e.code(), code, "{e:?}");
    assert_eq!(e.http_status(), status, "{e:?}");
}

// ----- migrations -----

async fn migrations_on_first_open(t: Target) {
    if let Some(path) = &t.path {
        assert!(!path.exists());
    }
    let store = t.open().await;
    assert_eq!(store.backend(), t.backend);
    if let Some(path) = &t.path {
        assert!(
            path.exists(),
            "the SQLite file (and its directories) are created"
        );
    }
    store.ping().await.unwrap();
    assert_eq!(store.registry_version().await.unwrap(), 0);
    assert!(store.list_accounts().await.unwrap().is_empty());
    assert!(store.list_roles().await.unwrap().is_empty());
    // A second open (another instance, or a restart) finds the schema migrated.
    store
        .upsert_role("reader", None, &codes(&["a:read"]))
        .await
        .unwrap();
    let again = t.open().await;
    assert_eq!(again.list_roles().await.unwrap().len(), 1);
    assert_eq!(again.registry_version().await.unwrap(), 1);
}
both!(migrations, migrations_on_first_open);

// ----- accounts -----

async fn account_crud(t: Target) {
    let s = t.open().await;
    s.upsert_role("reader", Some("reads"), &codes(&["attributes:read"]))
        .await
        .unwrap();
    let mut new = NewAccount::with_subject(ISS, "sub-1", "cli");
    new.client_id = Some("evently-sync".into());
    new.display_name = Some("Evently sync job".into());
    new.roles = codes(&["reader"]);
    let a = s.create_account(new).await.unwrap();
    assert_eq!(a.issuer, ISS);
    assert_eq!(a.subject.as_deref(), Some("sub-1"));
    assert_eq!(a.client_id.as_deref(), Some("evently-sync"));
    assert_eq!(a.display_name.as_deref(), Some("Evently sync job"));
    assert!(a.enabled);
    assert_eq!(a.roles, codes(&["reader"]));
    assert_eq!(a.created_at, START);
    assert_eq!(a.updated_at, START);
    assert_eq!(a.created_by, "cli");
    assert_eq!(a.id.len(), 36, "a uuid");

    assert_eq!(s.get_account(&a.id).await.unwrap(), a);

    let b = s
        .create_account(NewAccount::with_client_id(
            ISS,
            "SmartEM_Agent",
            "api:admin",
        ))
        .await
        .unwrap();
    assert_eq!(b.subject, None);
    assert_eq!(b.created_by, "api:admin");

    // find: subject first, then client id; per issuer.
    let by_sub = s.find_account(ISS, Some("sub-1"), None).await.unwrap();
    assert_eq!(by_sub.map(|x| x.id), Some(a.id.clone()));
    let by_client = s
        .find_account(ISS, Some("unknown-sub"), Some("SmartEM_Agent"))
        .await
        .unwrap();
    assert_eq!(by_client.map(|x| x.id), Some(b.id.clone()));
    let subject_wins = s
        .find_account(ISS, Some("sub-1"), Some("SmartEM_Agent"))
        .await
        .unwrap();
    assert_eq!(subject_wins.map(|x| x.id), Some(a.id.clone()));
    assert_eq!(
        s.find_account(OTHER_ISS, Some("sub-1"), None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(s.find_account(ISS, None, None).await.unwrap(), None);

    let all = s.list_accounts().await.unwrap();
    assert_eq!(all.len(), 2);
    let listed_a = all.iter().find(|x| x.id == a.id).unwrap();
    assert_eq!(listed_a.roles, codes(&["reader"]));

    // JSON output.
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["created_at"], START.as_millis());
    assert_eq!(json["roles"][0], "reader");
    assert_eq!(json["enabled"], true);
}
both!(accounts, account_crud);

async fn identity_unique_per_issuer(t: Target) {
    let s = t.open().await;
    s.create_account(NewAccount::with_subject(ISS, "sub-1", "cli"))
        .await
        .unwrap();
    s.create_account(NewAccount::with_client_id(ISS, "client-1", "cli"))
        .await
        .unwrap();
    let dup = s
        .create_account(NewAccount::with_subject(ISS, "sub-1", "cli"))
        .await;
    assert_err(dup, "account_exists", 409);
    let dup = s
        .create_account(NewAccount::with_client_id(ISS, "client-1", "cli"))
        .await;
    let e = dup.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(e.code(), "account_exists");
    // The same identity at another issuer is another account.
    s.create_account(NewAccount::with_subject(OTHER_ISS, "sub-1", "cli"))
        .await
        .unwrap();
    s.create_account(NewAccount::with_client_id(OTHER_ISS, "client-1", "cli"))
        .await
        .unwrap();
    // A client id equal to another account's subject is fine (different columns).
    s.create_account(NewAccount::with_client_id(ISS, "sub-1", "cli"))
        .await
        .unwrap();
    assert_eq!(s.list_accounts().await.unwrap().len(), 5);
    // No identity at all, or no issuer: refused.
    let mut nothing = NewAccount::with_subject(ISS, "", "cli");
    nothing.subject = None;
    assert_err(s.create_account(nothing).await, "invalid_account", 400);
    assert_err(
        s.create_account(NewAccount::with_subject("", "x", "cli"))
            .await,
        "invalid_account",
        400,
    );
    // A refused create leaves nothing behind and does not bump the version.
    let v = s.registry_version().await.unwrap();
    let mut with_missing_role = NewAccount::with_subject(ISS, "sub-2", "cli");
    with_missing_role.roles = codes(&["nope"]);
    assert_err(
        s.create_account(with_missing_role).await,
        "role_not_found",
        404,
    );
    assert_eq!(
        s.find_account(ISS, Some("sub-2"), None).await.unwrap(),
        None
    );
    assert_eq!(s.registry_version().await.unwrap(), v);
}
both!(identity_uniqueness, identity_unique_per_issuer);

async fn roles_grants_and_permissions(t: Target) {
    let s = t.open().await;
    let reader = s
        .upsert_role(
            "reader",
            Some("read attributes"),
            &codes(&["attributes:read", "events:read", "attributes:read"]),
        )
        .await
        .unwrap();
    assert_eq!(
        reader.permissions,
        codes(&["attributes:read", "events:read"])
    );
    assert_eq!(reader.description.as_deref(), Some("read attributes"));
    let writer = s
        .upsert_role("writer", None, &codes(&["events:*", "*"]))
        .await
        .unwrap();
    assert_eq!(
        writer.permissions,
        codes(&["*", "events:*"]),
        "wildcards verbatim"
    );

    let a = s
        .create_account(NewAccount::with_subject(ISS, "sa-1", "cli"))
        .await
        .unwrap();
    assert!(s.permissions_of(&a.id).await.unwrap().is_empty());

    t.clock.advance(Duration::from_secs(10));
    let a = s.grant_role(&a.id, "reader").await.unwrap();
    assert_eq!(a.roles, codes(&["reader"]));
    assert_eq!(a.updated_at, START.plus(Duration::from_secs(10)));
    let a = s.grant_role(&a.id, "writer").await.unwrap();
    let a = s.grant_role(&a.id, "writer").await.unwrap(); // idempotent
    assert_eq!(a.roles, codes(&["reader", "writer"]));
    let expected: BTreeSet<String> = ["attributes:read", "events:read", "events:*", "*"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(s.permissions_of(&a.id).await.unwrap(), expected);

    // Replacing a role's permissions changes what its holders get.
    s.upsert_role("reader", None, &codes(&["attributes:read"]))
        .await
        .unwrap();
    let r = s.get_role("reader").await.unwrap();
    assert_eq!(r.description, None);
    assert_eq!(r.permissions, codes(&["attributes:read"]));
    assert!(
        !s.permissions_of(&a.id)
            .await
            .unwrap()
            .contains("events:read")
    );

    let a = s.revoke_role(&a.id, "writer").await.unwrap();
    assert_eq!(a.roles, codes(&["reader"]));
    let a = s.revoke_role(&a.id, "writer").await.unwrap(); // idempotent
    assert_eq!(a.roles, codes(&["reader"]));
    assert_eq!(
        s.permissions_of(&a.id).await.unwrap(),
        ["attributes:read".to_string()].into_iter().collect()
    );

    assert_err(s.grant_role(&a.id, "nope").await, "role_not_found", 404);
    assert_err(s.revoke_role(&a.id, "nope").await, "role_not_found", 404);
    let roles = s.list_roles().await.unwrap();
    assert_eq!(
        roles.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["reader", "writer"]
    );
    assert_eq!(roles[1].permissions, codes(&["*", "events:*"]));

    // Codes are space-joined in the audit log, so spaces are refused; so are empty names.
    assert_err(
        s.upsert_role("bad", None, &codes(&["events: read"])).await,
        "invalid_permission",
        400,
    );
    assert_err(s.upsert_role("", None, &[]).await, "invalid_role", 400);
    assert_err(s.upsert_role("a b", None, &[]).await, "invalid_role", 400);
}
both!(roles, roles_grants_and_permissions);

async fn disable_and_enable(t: Target) {
    let s = t.open().await;
    let a = s
        .create_account(NewAccount::with_subject(ISS, "sa-1", "cli"))
        .await
        .unwrap();
    t.clock.advance(Duration::from_secs(60));
    let off = s.set_account_enabled(&a.id, false).await.unwrap();
    assert!(!off.enabled);
    assert_eq!(off.updated_at, START.plus(Duration::from_secs(60)));
    assert_eq!(off.created_at, START);
    assert!(!s.get_account(&a.id).await.unwrap().enabled);
    let found = s
        .find_account(ISS, Some("sa-1"), None)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !found.enabled,
        "disabled accounts are still found (and refused by the caller)"
    );
    let on = s.set_account_enabled(&a.id, true).await.unwrap();
    assert!(on.enabled);
    let mut disabled = NewAccount::with_client_id(ISS, "c", "cli");
    disabled.enabled = false;
    assert!(!s.create_account(disabled).await.unwrap().enabled);
}
both!(enable_disable, disable_and_enable);

async fn delete_account(t: Target) {
    let s = t.open().await;
    s.upsert_role("reader", None, &codes(&["a:read"]))
        .await
        .unwrap();
    let mut new = NewAccount::with_subject(ISS, "sa-1", "cli");
    new.roles = codes(&["reader"]);
    let a = s.create_account(new).await.unwrap();
    s.delete_account(&a.id).await.unwrap();
    assert_err(s.get_account(&a.id).await, "account_not_found", 404);
    assert_err(s.delete_account(&a.id).await, "account_not_found", 404);
    assert_eq!(s.find_account(ISS, Some("sa-1"), None).await.unwrap(), None);
    // The role is free again, and the identity can be registered anew.
    s.delete_role("reader", false).await.unwrap();
    s.create_account(NewAccount::with_subject(ISS, "sa-1", "cli"))
        .await
        .unwrap();
}
both!(delete, delete_account);

async fn role_deletion_refused_while_held(t: Target) {
    let s = t.open().await;
    s.upsert_role("reader", None, &codes(&["a:read"]))
        .await
        .unwrap();
    s.upsert_role("unused", None, &codes(&["b:read"]))
        .await
        .unwrap();
    let a = s
        .create_account(NewAccount::with_subject(ISS, "sa-1", "cli"))
        .await
        .unwrap();
    s.grant_role(&a.id, "reader").await.unwrap();
    let e = s.delete_role("reader", false).await.unwrap_err();
    assert_eq!(e.code(), "role_in_use");
    assert_eq!(e.http_status(), 409);
    assert!(e.message().contains("1 account"), "{e}");
    assert_eq!(
        s.get_role("reader").await.unwrap().permissions,
        codes(&["a:read"])
    );

    s.delete_role("unused", false).await.unwrap();
    assert_err(s.get_role("unused").await, "role_not_found", 404);

    s.delete_role("reader", true).await.unwrap();
    assert!(s.get_account(&a.id).await.unwrap().roles.is_empty());
    assert!(s.permissions_of(&a.id).await.unwrap().is_empty());
    assert_err(s.delete_role("reader", false).await, "role_not_found", 404);
    assert_err(s.delete_role("reader", true).await, "role_not_found", 404);
    // Re-created with the same name, it holds nothing left over.
    let r = s.upsert_role("reader", None, &[]).await.unwrap();
    assert!(r.permissions.is_empty());
}
both!(role_deletion, role_deletion_refused_while_held);

// ----- audit -----

fn record(i: i64) -> AuditRecord {
    let sa = i % 2 == 0;
    AuditRecord {
        id: None,
        kind: AuditKind::Decision,
        at: START.plus(Duration::from_secs(i as u64)),
        issuer: ISS.into(),
        subject: Some(format!("sub-{}", i % 5)),
        username: (!sa).then(|| format!("user-{}", i % 5)),
        client_id: sa.then(|| format!("client-{}", i % 3)),
        principal_kind: if sa {
            PrincipalKind::ServiceAccount
        } else {
            PrincipalKind::User
        },
        method: "GET".into(),
        path: format!("/api/items/{i}"),
        rule: (i % 7 == 0).then(|| "items-read".to_string()),
        permissions_used: if i % 4 == 0 {
            Vec::new()
        } else {
            codes(&["items:read", "events:*"])
        },
        outcome: match i % 4 {
            0 => AuditOutcome::Allow,
            1 => AuditOutcome::Deny,
            2 => AuditOutcome::DryRunDeny,
            _ => AuditOutcome::RateLimited,
        },
        reason: (i % 4 == 1).then(|| "missing items:write".to_string()),
        instance: format!("gw-{}", i % 2),
        action: None,
        object: None,
    }
}

async fn audit_append_and_query(t: Target) {
    let s = t.open().await;
    assert!(
        s.query_audit(&AuditQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    s.append_audit(&[]).await.unwrap();
    let rows: Vec<AuditRecord> = (0..1000).map(record).collect();
    s.append_audit(&rows).await.unwrap();

    // Default: 100 newest, newest first.
    let page = s.query_audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[0].at, rows[999].at);
    assert!(page.windows(2).all(|w| w[0].at > w[1].at));
    let mut newest = page[0].clone();
    assert!(newest.id.is_some());
    newest.id = None;
    assert_eq!(newest, rows[999], "every field round-trips");
    let empty_perms = page.iter().find(|r| r.at == rows[996].at).unwrap();
    assert!(empty_perms.permissions_used.is_empty());

    let all = |q: AuditQuery| AuditQuery {
        limit: Some(10_000),
        ..q
    };
    assert_eq!(
        s.query_audit(&all(AuditQuery::default()))
            .await
            .unwrap()
            .len(),
        1000
    );

    // principal: the subject or the client id.
    let by_sub = s
        .query_audit(&all(AuditQuery {
            principal: Some("sub-3".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_sub.len(), 200);
    assert!(by_sub.iter().all(|r| r.subject.as_deref() == Some("sub-3")));
    let by_client = s
        .query_audit(&all(AuditQuery {
            principal: Some("client-1".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    let expected = rows
        .iter()
        .filter(|r| r.client_id.as_deref() == Some("client-1"))
        .count();
    assert_eq!(by_client.len(), expected);
    assert!(
        by_client
            .iter()
            .all(|r| r.principal_kind == PrincipalKind::ServiceAccount)
    );

    // outcome
    for outcome in [
        AuditOutcome::Allow,
        AuditOutcome::Deny,
        AuditOutcome::DryRunDeny,
        AuditOutcome::RateLimited,
    ] {
        let got = s
            .query_audit(&all(AuditQuery {
                outcome: Some(outcome),
                ..Default::default()
            }))
            .await
            .unwrap();
        assert_eq!(got.len(), 250, "{outcome:?}");
        assert!(got.iter().all(|r| r.outcome == outcome));
    }

    // since (inclusive) and until (exclusive)
    let since = rows[900].at;
    let until = rows[950].at;
    let window = s
        .query_audit(&all(AuditQuery {
            since: Some(since),
            until: Some(until),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(window.len(), 50);
    assert_eq!(window[0].at, rows[949].at);
    assert_eq!(window[49].at, since);
    let since_only = s
        .query_audit(&all(AuditQuery {
            since: Some(since),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(since_only.len(), 100);
    let until_only = s
        .query_audit(&all(AuditQuery {
            until: Some(rows[10].at),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(until_only.len(), 10);

    // combined, with a limit
    let combined = s
        .query_audit(&AuditQuery {
            principal: Some("sub-0".into()),
            kind: Some(AuditKind::Decision),
            outcome: Some(AuditOutcome::Allow),
            since: Some(rows[500].at),
            until: None,
            limit: Some(3),
        })
        .await
        .unwrap();
    assert_eq!(combined.len(), 3);
    assert!(
        combined
            .iter()
            .all(|r| r.subject.as_deref() == Some("sub-0")
                && r.outcome == AuditOutcome::Allow
                && r.at >= rows[500].at)
    );
    assert_eq!(combined[0].at, rows[980].at);
    // principal also matches the username.
    let by_username = s
        .query_audit(&all(AuditQuery {
            principal: Some("user-3".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(by_username.len(), 100);
    assert!(
        by_username
            .iter()
            .all(|r| r.username.as_deref() == Some("user-3"))
    );
    let admin_rows = s
        .query_audit(&all(AuditQuery {
            kind: Some(AuditKind::Admin),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert!(admin_rows.is_empty(), "decisions only so far");

    // Equal timestamps: the later insert comes first.
    let same_time = UnixTime::from_secs(1_900_000_000);
    let mut first = record(1);
    first.at = same_time;
    first.path = "/first".into();
    let mut second = record(1);
    second.at = same_time;
    second.path = "/second".into();
    s.append_audit(&[first, second]).await.unwrap();
    let tie = s
        .query_audit(&AuditQuery {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tie[0].path, "/second");
    assert_eq!(tie[1].path, "/first");

    // limits
    let too_many = s
        .query_audit(&AuditQuery {
            limit: Some(10_001),
            ..Default::default()
        })
        .await;
    assert_err(too_many, "invalid_limit", 400);
    assert_err(
        s.query_audit(&AuditQuery {
            limit: Some(0),
            ..Default::default()
        })
        .await,
        "invalid_limit",
        400,
    );
    // Audit rows are not registry changes.
    assert_eq!(s.registry_version().await.unwrap(), 0);
}
both!(audit, audit_append_and_query);

// ----- change propagation -----

async fn wait_for(rx: &mut tokio::sync::watch::Receiver<i64>, at_least: i64, within: Duration) {
    let r = tokio::time::timeout(within, rx.wait_for(|v| *v >= at_least))
        .await
        .map(|_| ());
    assert!(
        r.is_ok(),
        "version {at_least} not seen within {within:?} (saw {})",
        *rx.borrow()
    );
}

async fn watch_sees_other_instance(t: Target) {
    let a = t.open().await;
    let b = t.open().await;
    let mut rx_a = a.watch();
    let mut rx_b = b.watch();
    assert_eq!(*rx_a.borrow_and_update(), 0);

    // A local change is seen at once by the instance that made it.
    b.upsert_role("reader", None, &codes(&["a:read"]))
        .await
        .unwrap();
    assert_eq!(*rx_b.borrow_and_update(), 1);
    // ... and within a second by the other one.
    wait_for(&mut rx_a, 1, Duration::from_secs(1)).await;

    // Every kind of change, in both directions.
    let acc = a
        .create_account(NewAccount::with_subject(ISS, "sa", "cli"))
        .await
        .unwrap();
    wait_for(&mut rx_b, 2, Duration::from_secs(1)).await;
    b.grant_role(&acc.id, "reader").await.unwrap();
    wait_for(&mut rx_a, 3, Duration::from_secs(1)).await;
    assert_eq!(
        a.get_account(&acc.id).await.unwrap().roles,
        codes(&["reader"])
    );
    b.set_account_enabled(&acc.id, false).await.unwrap();
    wait_for(&mut rx_a, 4, Duration::from_secs(1)).await;
    b.revoke_role(&acc.id, "reader").await.unwrap();
    b.delete_role("reader", false).await.unwrap();
    b.delete_account(&acc.id).await.unwrap();
    wait_for(&mut rx_a, 7, Duration::from_secs(1)).await;
    assert_eq!(a.registry_version().await.unwrap(), 7);

    // A refused change bumps nothing.
    assert!(b.delete_account(&acc.id).await.is_err());
    assert_eq!(b.registry_version().await.unwrap(), 7);

    // A store opened later starts at the current version.
    let c = t.open().await;
    assert_eq!(*c.watch().borrow(), 7);
    drop((a, b, c));
}
both!(watch, watch_sees_other_instance);

// ----- errors -----

async fn errors_for_missing_rows(t: Target) {
    let s = t.open().await;
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_err(s.get_account(missing).await, "account_not_found", 404);
    assert_err(
        s.set_account_enabled(missing, true).await,
        "account_not_found",
        404,
    );
    assert_err(s.delete_account(missing).await, "account_not_found", 404);
    assert_err(s.permissions_of(missing).await, "account_not_found", 404);
    s.upsert_role("reader", None, &[]).await.unwrap();
    assert_err(
        s.grant_role(missing, "reader").await,
        "account_not_found",
        404,
    );
    assert_err(
        s.revoke_role(missing, "reader").await,
        "account_not_found",
        404,
    );
    assert_err(s.get_role("nope").await, "role_not_found", 404);
    assert_err(s.delete_role("nope", false).await, "role_not_found", 404);
    let e = s.get_account(missing).await.unwrap_err();
    assert_eq!(e.context_value("account"), Some(missing));
    assert!(!e.is_retryable());
    assert_eq!(
        s.registry_version().await.unwrap(),
        1,
        "only the upsert counted"
    );
}
both!(missing_rows, errors_for_missing_rows);

async fn no_password_in_errors_or_debug(t: Target) {
    let s = t.open().await;
    let debug = format!("{s:?} {:?}", t.cfg);
    if let Some(pg) = &t.pg {
        let password = pg.password().to_owned();
        assert!(!debug.contains(&password), "{debug}");
        // A wrong password: a clear error that names neither password.
        let dir = tempfile::tempdir().unwrap();
        let wrong = dir.path().join("wrong");
        std::fs::write(&wrong, "not-the-password-42").unwrap();
        let mut cfg = t.cfg.clone();
        cfg.password = Some(tw_config::SecretRef::File(wrong));
        let e = Store::open(&cfg, std::sync::Arc::new(t.clock.clone()))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?}");
        assert_eq!(e.code(), "storage_auth_failed", "{text}");
        assert!(!text.contains("not-the-password-42"), "{text}");
        assert!(!text.contains(&password), "{text}");
        // A password in the URL is refused before connecting, without echoing it.
        let mut cfg = t.cfg.clone();
        cfg.url = cfg
            .url
            .replace("postgres@", &format!("postgres:{password}@"));
        let e = Store::open(&cfg, std::sync::Arc::new(t.clock.clone()))
            .await
            .unwrap_err();
        let text = format!("{e} {e:?} {cfg:?}");
        assert_eq!(e.context_value("key"), Some("storage.url"), "{text}");
        assert!(!text.contains(&password), "{text}");
        // Nothing listening: unavailable, retryable.
        let mut cfg = t.cfg.clone();
        cfg.url = format!("postgres://postgres@127.0.0.1:{}/x", unused_port());
        cfg.connect_timeout = Duration::from_secs(1);
        let e = Store::open(&cfg, std::sync::Arc::new(t.clock.clone()))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "storage_unavailable", "{e:?}");
        assert!(e.is_retryable());
        assert_eq!(e.http_status(), 503);
        assert!(!format!("{e} {e:?}").contains(&password));
    } else {
        assert!(debug.contains("Sqlite"), "{debug}");
        // A path that cannot be created: a clear error, no panic.
        let mut cfg = t.cfg.clone();
        cfg.url = "sqlite:///proc/tw-cannot-create/x.db".into();
        let e = Store::open(&cfg, std::sync::Arc::new(t.clock.clone()))
            .await
            .unwrap_err();
        assert!(e.message().contains("/proc/tw-cannot-create"), "{e:?}");
    }
    assert_eq!(s.backend() == Backend::Postgres, t.pg.is_some());
}
both!(no_secrets, no_password_in_errors_or_debug);

fn unused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ----- concurrency -----

async fn concurrent_writers_on_two_instances(t: Target) {
    let a = t.open().await;
    let b = t.open().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            s.upsert_role(&format!("role-{i}"), None, &codes(&["x:read"]))
                .await
                .map(|_| ())
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        a.registry_version().await.unwrap(),
        20,
        "every change counted once"
    );
    assert_eq!(b.list_roles().await.unwrap().len(), 20);
    wait_for(&mut a.watch(), 20, Duration::from_secs(1)).await;
    wait_for(&mut b.watch(), 20, Duration::from_secs(1)).await;
}
both!(concurrent_writers, concurrent_writers_on_two_instances);

// ----- admin changes -----

fn operator(method: &str, path: &str) -> AdminActor {
    AdminActor {
        issuer: ISS.into(),
        subject: Some("f1b6e8c2-alice".into()),
        username: Some("alice".into()),
        client_id: Some("ops-console".into()),
        principal_kind: PrincipalKind::User,
        permissions_used: codes(&["tokenwarden:admin"]),
        method: method.into(),
        path: path.into(),
        instance: "gw-admin".into(),
    }
}

/// The admin audit rows, oldest first.
async fn admin_rows(s: &Store) -> Vec<AuditRecord> {
    let mut rows = s
        .query_audit(&AuditQuery {
            kind: Some(AuditKind::Admin),
            limit: Some(1000),
            ..Default::default()
        })
        .await
        .unwrap();
    rows.reverse();
    rows
}

/// Every write through `as_admin` commits with an audit row naming the person (subject and
/// username), the client, the action and the object; a refused write leaves neither.
async fn admin_changes_are_audited(t: Target) {
    let s = t.open().await;
    let put = operator("PUT", "/admin/v1/roles/reader");
    s.as_admin(&put)
        .upsert_role("reader", Some("reads"), &codes(&["a:read"]))
        .await
        .unwrap();
    s.as_admin(&put)
        .upsert_role("writer", None, &codes(&["a:write"]))
        .await
        .unwrap();
    let post = operator("POST", "/admin/v1/accounts");
    let mut new = NewAccount::with_client_id(ISS, "svc", "api:user:alice");
    new.roles = codes(&["reader"]);
    let a = s.as_admin(&post).create_account(new).await.unwrap();
    t.clock.advance(Duration::from_secs(5));
    let writes = s.as_admin(&post);
    writes.grant_role(&a.id, "writer").await.unwrap();
    writes.revoke_role(&a.id, "writer").await.unwrap();
    writes.set_account_enabled(&a.id, false).await.unwrap();
    writes.set_account_enabled(&a.id, true).await.unwrap();
    writes.delete_role("writer", false).await.unwrap();
    writes.delete_role("reader", true).await.unwrap();
    writes.delete_account(&a.id).await.unwrap();

    let rows = admin_rows(&s).await;
    let got: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_deref().unwrap(), r.object.as_deref().unwrap()))
        .collect();
    let grant = format!("{} writer", a.id);
    assert_eq!(
        got,
        [
            ("role.put", "reader"),
            ("role.put", "writer"),
            ("account.create", a.id.as_str()),
            ("account.grant", grant.as_str()),
            ("account.revoke", grant.as_str()),
            ("account.disable", a.id.as_str()),
            ("account.enable", a.id.as_str()),
            ("role.delete", "writer"),
            ("role.delete_forced", "reader"),
            ("account.delete", a.id.as_str()),
        ]
    );
    for r in &rows {
        assert_eq!(r.kind, AuditKind::Admin);
        assert_eq!(r.subject.as_deref(), Some("f1b6e8c2-alice"));
        assert_eq!(r.username.as_deref(), Some("alice"));
        assert_eq!(r.client_id.as_deref(), Some("ops-console"));
        assert_eq!(r.principal_kind, PrincipalKind::User);
        assert_eq!(r.issuer, ISS);
        assert_eq!(r.outcome, AuditOutcome::Allow);
        assert_eq!(r.permissions_used, codes(&["tokenwarden:admin"]));
        assert_eq!(r.instance, "gw-admin");
        assert_eq!(r.rule, None);
    }
    assert_eq!(rows[0].method, "PUT");
    assert_eq!(rows[0].path, "/admin/v1/roles/reader");
    assert_eq!(rows[0].at, START);
    assert_eq!(
        rows[3].at,
        START.plus(Duration::from_secs(5)),
        "the store's clock"
    );

    // Queried by the person's username, subject or client; decisions stay out of `kind=admin`.
    s.append_audit(&[record(1)]).await.unwrap();
    for who in ["alice", "f1b6e8c2-alice", "ops-console"] {
        let by = s
            .query_audit(&AuditQuery {
                principal: Some(who.into()),
                kind: Some(AuditKind::Admin),
                limit: Some(1000),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by.len(), rows.len(), "{who}");
    }
    let decisions = s
        .query_audit(&AuditQuery {
            kind: Some(AuditKind::Decision),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].action, None);

    // Refused writes: nothing changed, nothing audited, no version bump.
    let v = s.registry_version().await.unwrap();
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_err(
        writes.delete_account(missing).await,
        "account_not_found",
        404,
    );
    assert_err(
        writes.grant_role(missing, "x").await,
        "account_not_found",
        404,
    );
    assert_err(
        writes.delete_role("ghost", true).await,
        "role_not_found",
        404,
    );
    let mut bad = NewAccount::with_client_id(ISS, "svc2", "api:user:alice");
    bad.roles = codes(&["ghost"]);
    assert_err(writes.create_account(bad).await, "role_not_found", 404);
    assert_eq!(s.find_account(ISS, None, Some("svc2")).await.unwrap(), None);
    assert_eq!(admin_rows(&s).await.len(), rows.len());
    assert_eq!(s.registry_version().await.unwrap(), v);

    // Writes without an actor (the CLI's) are not admin rows.
    s.upsert_role("plain", None, &[]).await.unwrap();
    assert_eq!(admin_rows(&s).await.len(), rows.len());
}
both!(admin_audit, admin_changes_are_audited);

/// What could drive an operator's terminal: C0 and C1 controls, DEL, bidirectional overrides.
const HOSTILE: [&str; 8] = [
    "\u{1b}[2J",
    "a\u{1b}]0;title\u{7}",
    "x\u{9b}31m",
    "line\nbreak",
    "cr\rreturn",
    "del\u{7f}",
    "rtl\u{202e}txt",
    "iso\u{2066}late",
];

/// Admin input is bounded and free of control characters: 400 naming the field, nothing stored,
/// and the message quotes at most an escaped start of the value.
async fn input_is_bounded(t: Target) {
    let s = t.open().await;
    s.upsert_role("reader", None, &[]).await.unwrap();
    let v = s.registry_version().await.unwrap();
    let refused = |e: tw_core::Error, code: &str, field: &str| {
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(e.http_status(), 400, "{e}");
        assert_eq!(e.context_value("field"), Some(field), "{e}");
        let text = e.to_string();
        assert!(text.len() < 400, "a short message: {} bytes", text.len());
        assert!(
            !text.chars().any(tw_core::text::is_terminal_unsafe),
            "escaped: {text:?}"
        );
    };
    let huge = "n".repeat(100 * 1024);
    let with = |f: &dyn Fn(&mut NewAccount)| {
        let mut n = NewAccount::with_client_id(ISS, "svc", "cli");
        f(&mut n);
        n
    };
    type Case<'a> = (&'static str, Box<dyn Fn(&mut NewAccount) + 'a>);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "display_name",
            Box::new(|n| n.display_name = Some(huge.clone())),
        ),
        (
            "display_name",
            Box::new(|n| n.display_name = Some("d".repeat(201))),
        ),
        ("subject", Box::new(|n| n.subject = Some("s".repeat(256)))),
        ("client_id", Box::new(|n| n.client_id = Some(huge.clone()))),
        (
            "issuer",
            Box::new(|n| n.issuer = format!("https://{}", "i".repeat(1100))),
        ),
        ("created_by", Box::new(|n| n.created_by = "c".repeat(256))),
        ("roles", Box::new(|n| n.roles = vec!["reader".into(); 257])),
        ("roles", Box::new(|n| n.roles = vec!["read\u{1b}er".into()])),
    ];
    for hostile in HOSTILE {
        let h = hostile.to_owned();
        cases.push((
            "display_name",
            Box::new(move |n| n.display_name = Some(h.clone())),
        ));
        let h = hostile.to_owned();
        cases.push((
            "client_id",
            Box::new(move |n| n.client_id = Some(h.clone())),
        ));
        let h = hostile.to_owned();
        cases.push(("subject", Box::new(move |n| n.subject = Some(h.clone()))));
        let h = hostile.to_owned();
        cases.push((
            "issuer",
            Box::new(move |n| n.issuer = format!("https://kc/{h}")),
        ));
    }
    for (field, set) in &cases {
        let e = s.create_account(with(set.as_ref())).await.unwrap_err();
        let code = if *field == "roles" && e.code() == "invalid_role" {
            "invalid_role"
        } else {
            "invalid_account"
        };
        refused(e, code, field);
    }
    // At the bounds: accepted, with printable Unicode.
    let mut ok = with(&|n| n.display_name = Some("é".repeat(200)));
    ok.subject = Some("s".repeat(255));
    ok.roles = codes(&["reader"]);
    s.create_account(ok).await.unwrap();
    let v_after_ok = v + 1;

    // Roles: name, description, permission codes.
    let e = s.upsert_role(&huge, None, &[]).await.unwrap_err();
    refused(e, "invalid_role", "name");
    let e = s
        .upsert_role("r", Some(&"d".repeat(501)), &[])
        .await
        .unwrap_err();
    refused(e, "invalid_role", "description");
    let e = s
        .upsert_role("r", None, &vec!["a:b".to_owned(); 257])
        .await
        .unwrap_err();
    refused(e, "invalid_permission", "permissions");
    for hostile in HOSTILE {
        let e = s.upsert_role(hostile, None, &[]).await.unwrap_err();
        refused(e, "invalid_role", "name");
        let e = s.upsert_role("r", Some(hostile), &[]).await.unwrap_err();
        refused(e, "invalid_role", "description");
        let e = s
            .upsert_role("r", None, &[hostile.to_owned()])
            .await
            .unwrap_err();
        refused(e, "invalid_permission", "permissions");
    }
    s.upsert_role("r", Some(&"d".repeat(500)), &codes(&["a:b"]))
        .await
        .unwrap();
    assert_eq!(
        s.registry_version().await.unwrap(),
        v_after_ok + 1,
        "only the valid writes"
    );

    // Looking up hostile names is answered with an escaped, short message.
    let e = s.get_role(&format!("\u{1b}[2J{huge}")).await.unwrap_err();
    assert_eq!(e.code(), "role_not_found");
    assert!(e.to_string().len() < 300);
    assert!(!e.to_string().contains('\u{1b}'));
    let e = s.get_account("\u{9b}31m").await.unwrap_err();
    assert!(!e.to_string().contains('\u{9b}'), "{e}");
}
both!(bounded_input, input_is_bounded);

/// The store as the authorizer's registry: an account registered by client id is found for that
/// client's service-account key, never for a user's key through the same client.
async fn client_id_accounts_are_for_service_accounts(t: Target) {
    let s = t.open().await;
    s.upsert_role("ops-admin", None, &codes(&["*"]))
        .await
        .unwrap();
    let mut new = NewAccount::with_client_id(ISS, "ops-console", "cli");
    new.roles = codes(&["ops-admin"]);
    let console = s.create_account(new).await.unwrap();
    let bob = s
        .create_account(NewAccount::with_subject(ISS, "sub-bob", "cli"))
        .await
        .unwrap();

    let sa = AccountKey::service_account(ISS, Some("sa-sub"), Some("ops-console"));
    let found = s.find(&sa).await.unwrap().expect("the service account");
    assert_eq!(found.id, console.id);
    assert_eq!(found.permissions, codes(&["*"]));
    for user in [
        AccountKey::user(ISS, Some("sub-alice")),
        AccountKey::user(ISS, None),
        AccountKey::user(ISS, Some("")),
    ] {
        assert_eq!(s.find(&user).await.unwrap(), None, "{user:?}");
    }
    // A user's own account, by subject.
    let found = s
        .find(&AccountKey::user(ISS, Some("sub-bob")))
        .await
        .unwrap();
    assert_eq!(found.map(|a| a.id), Some(bob.id));
    // Another issuer's service account of the same name is another client.
    let other = AccountKey::service_account(OTHER_ISS, None, Some("ops-console"));
    assert_eq!(s.find(&other).await.unwrap(), None);
}
both!(registry_keys, client_id_accounts_are_for_service_accounts);
