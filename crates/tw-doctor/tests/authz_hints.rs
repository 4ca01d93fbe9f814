//! The authz step's fixes name the registry commands exactly when the gateway reads the account
//! registry for the token's issuer. Real test IdP, the gateway's own verifier and authorizer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use tw_core::SystemClock;
use tw_doctor::{Doctor, Options, Report, Status};
use tw_testkit::Idp;

/// agent-basic (realm role `agent`) against a gateway whose POST /grids/** needs grids:write;
/// `authz_lines` go into `[gateway.authz]`, `roles_lines` into `[gateway.authz.roles]`.
async fn diagnose_post(idp: &Idp, authz_lines: &str, roles_lines: &str) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "agent-basic-secret").unwrap();
    let toml = format!(
        r#"[profiles.main]
issuer = "{issuer}"
client_id = "agent-basic"
client_secret = {{ file = "{secret}" }}

[gateway]
listen = "127.0.0.1:0"
[[gateway.issuers]]
issuer = "{issuer}"
audiences = ["api"]

[gateway.authz]
{authz_lines}

[gateway.authz.roles]
{roles_lines}

[[gateway.authz.rules]]
name = "grids-write"
methods = ["POST"]
paths = ["/grids/**"]
require_all = ["grids:write"]
"#,
        issuer = idp.issuer(),
        secret = secret.display(),
    );
    let cfg = tw_config::load_str(&toml, "doctor.toml").unwrap_or_else(|e| panic!("{e}"));
    let opts = Options {
        path: Some("/grids/1".into()),
        method: Some("POST".into()),
        ..Options::default()
    };
    Doctor::new(Arc::new(SystemClock))
        .diagnose(&cfg, "doctor.toml", &opts)
        .await
}

fn authz(r: &Report) -> (Status, Option<&'static str>, String) {
    let s = r
        .step("authz", Some("main"))
        .unwrap_or_else(|| panic!("no authz step: {r}"));
    (s.status, s.cause, s.fix.join("\n"))
}

#[tokio::test]
async fn registry_commands_are_named_when_the_registry_is_a_source() {
    let idp = Idp::start_default().await;
    let iss = idp.issuer();
    let agent_reads = r#""agent" = ["grids:read"]"#;

    // The registry is a source: besides the Keycloak role, `accounts grant` for this very account.
    let r = diagnose_post(&idp, r#"sources = ["roles", "registry"]"#, agent_reads).await;
    let (status, cause, fix) = authz(&r);
    assert_eq!(
        (status, cause),
        (Status::Fail, Some("missing_permission")),
        "{r}"
    );
    assert!(fix.contains("Assign role"), "{fix}");
    assert!(
        fix.contains(&format!(
            "tokenwarden accounts grant --issuer {iss} --client-id agent-basic ROLE"
        )),
        "{fix}"
    );
    assert!(
        fix.contains("tokenwarden roles create ROLE --permission grids:write"),
        "{fix}"
    );
    // The registry was not read here (no storage): said so, and the hint still stands.
    assert_eq!(
        r.step("gateway", None).map(|s| s.cause),
        Some(Some("registry_not_checked")),
        "{r}"
    );

    // Registry only for this issuer.
    let r = diagnose_post(
        &idp,
        &format!(
            "sources = [\"roles\"]\nissuer_sources = {{ \"{iss}\" = [\"roles\", \"registry\"] }}"
        ),
        agent_reads,
    )
    .await;
    assert!(authz(&r).2.contains("tokenwarden accounts grant"), "{r}");

    // Not a source (at all, or not for this issuer): no registry command.
    for lines in [
        "sources = [\"roles\"]".to_owned(),
        format!(
            "sources = [\"roles\", \"registry\"]\nissuer_sources = {{ \"{iss}\" = [\"roles\"] }}"
        ),
    ] {
        let r = diagnose_post(&idp, &lines, agent_reads).await;
        let (status, cause, fix) = authz(&r);
        assert_eq!(
            (status, cause),
            (Status::Fail, Some("missing_permission")),
            "{r}"
        );
        assert!(!fix.contains("tokenwarden accounts"), "{lines}: {fix}");
        assert!(fix.contains("Assign role"), "{fix}");
    }

    // No role maps at all: unknown principal; registering it is named only with the registry.
    let other = r#""someone-else" = ["grids:write"]"#;
    let r = diagnose_post(&idp, r#"sources = ["roles", "registry"]"#, other).await;
    let (_, cause, fix) = authz(&r);
    assert_eq!(cause, Some("unknown_principal"), "{r}");
    assert!(
        fix.contains(&format!(
            "tokenwarden accounts create --issuer {iss} --client-id agent-basic --role ROLE"
        )),
        "{fix}"
    );
    let r = diagnose_post(&idp, r#"sources = ["roles"]"#, other).await;
    let (_, cause, fix) = authz(&r);
    assert_eq!(cause, Some("unknown_principal"), "{r}");
    assert!(!fix.contains("tokenwarden accounts"), "{fix}");
}
