//! The hostile-token corpus against a verifier whose keys come from a real (static) key publisher.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use tw_core::{Clock, ErrorKind, ManualClock};
use tw_verify::testing::{CorpusParams, KeyPublisher, fixture_jwks, hostile_corpus, valid_corpus};
use tw_verify::{Check, StepStatus, Verifier, VerifyOptions, parse_unverified};

async fn setup() -> (KeyPublisher, ManualClock, CorpusParams, Arc<Verifier>) {
    let publisher = KeyPublisher::start(fixture_jwks()).await;
    let clock = ManualClock::starting_now();
    let p = CorpusParams::new("https://idp.example/realms/test", clock.now());
    let cfg = p.verifier_settings(&publisher.jwks_url());
    let v = common::verifier(&cfg, &clock);
    v.start().await;
    assert!(v.is_ready());
    (publisher, clock, p, v)
}

#[tokio::test]
async fn controls_are_accepted() {
    let (_pub, _clock, p, v) = setup().await;
    for (name, t) in valid_corpus(&p) {
        let got = v.verify(&t, VerifyOptions::default()).await;
        assert!(got.is_ok(), "{name}: {got:?}");
        let report = v.inspect(&t).await;
        assert!(report.is_valid(), "{name}:\n{report}");
        assert!(
            report.steps.iter().all(|s| s.status != StepStatus::Fail),
            "{name}:\n{report}"
        );
    }
}

#[tokio::test]
async fn every_hostile_token_is_refused_with_the_right_check() {
    let (publisher, _clock, p, v) = setup().await;
    let corpus = hostile_corpus(&p);
    assert!(corpus.len() >= 40, "corpus has {} tokens", corpus.len());
    let mut wrong = Vec::new();
    for h in &corpus {
        let got = v.verify(&h.token, VerifyOptions::default()).await;
        match &got {
            Ok(_) => wrong.push(format!("{}: ACCEPTED (expected {})", h.name, h.expected)),
            Err(e) if e.check() != h.expected => wrong.push(format!(
                "{}: refused by {} ({}) but expected {}",
                h.name,
                e.check(),
                e.description(),
                h.expected
            )),
            Err(e) => {
                // Safe for WWW-Authenticate: no quote, backslash or control character, and
                // nothing from the token.
                let d = e.description();
                assert!(
                    d.chars()
                        .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
                    "{}: {d:?}",
                    h.name
                );
                for needle in ["evil", "passwd", "admin", "attacker", "XYZ999", "127.0.0.1"] {
                    assert!(
                        !d.contains(needle),
                        "{}: description echoes token content: {d}",
                        h.name
                    );
                }
                for seg in h.token.split('.').filter(|s| s.len() > 8) {
                    assert!(!d.contains(seg), "{}: description echoes the token", h.name);
                }
                let err = e.clone().into_error();
                assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{}", h.name);
                assert_eq!(err.code(), "invalid_token");
                assert_eq!(err.http_status(), 401);
                assert_eq!(err.context_value("check"), Some(h.expected.code()));
            }
        }
        // inspect agrees with verify and never panics.
        let report = v.inspect(&h.token).await;
        match (&report.verdict, &got) {
            (Err(a), Err(b)) => {
                assert_eq!(a.check(), b.check(), "{}: inspect says\n{report}", h.name)
            }
            (Ok(_), Ok(_)) => {}
            _ => panic!("{}: inspect and verify disagree:\n{report}", h.name),
        }
        let failed: Vec<_> = report
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Fail)
            .collect();
        assert!(
            !failed.is_empty(),
            "{}: no failed step in\n{report}",
            h.name
        );
        let _ = parse_unverified(&h.token, p.max_token_bytes);
    }
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        corpus.len(),
        wrong.join("\n")
    );
    // Two issuers share the publisher: two startup fetches; the unknown-kid entries (all at the
    // Keycloak-mode issuer) cost at most one refetch, as the cooldown never passed.
    assert!(
        publisher.jwks_requests() <= 3,
        "JWKS requests: {}",
        publisher.jwks_requests()
    );
}

#[tokio::test]
async fn corpus_covers_every_token_check() {
    let clock = ManualClock::starting_now();
    let p = CorpusParams::new("https://idp.example/realms/test", clock.now());
    let corpus = hostile_corpus(&p);
    for c in [
        Check::Size,
        Check::Format,
        Check::Header,
        Check::Algorithm,
        Check::Issuer,
        Check::Key,
        Check::Signature,
        Check::Expiry,
        Check::NotBefore,
        Check::IssuedAt,
        Check::Audience,
        Check::AuthorizedParty,
        Check::TokenType,
    ] {
        assert!(
            corpus.iter().any(|h| h.expected == c),
            "no corpus token for {c}"
        );
    }
    let mut by_check = std::collections::BTreeMap::new();
    for h in &corpus {
        *by_check.entry(h.expected.code()).or_insert(0) += 1;
    }
    println!("{} hostile tokens: {by_check:?}", corpus.len());
    let mut names = std::collections::HashSet::new();
    for h in &corpus {
        assert!(names.insert(h.name), "duplicate corpus name {}", h.name);
    }
}
