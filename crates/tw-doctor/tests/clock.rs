//! Clock skew, through the library with an injected clock, against the real test IdP: the IdP's
//! `Date` header and the token's times against a local clock that is off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, ManualClock};
use tw_doctor::{Doctor, Options, Report, Status};
use tw_testkit::Idp;

fn config(idp: &Idp) -> tw_config::Config {
    config_with(idp, &format!("issuer = \"{}\"", idp.issuer()))
}

/// `endpoint`: the profile's `issuer = ...` or `token_url = ...` line.
fn config_with(idp: &Idp, endpoint: &str) -> tw_config::Config {
    let toml = format!(
        r#"[profiles.main]
{endpoint}
client_id = "agent-basic"
client_secret = {{ file = "{secret}" }}

[gateway]
listen = "127.0.0.1:0"
[[gateway.issuers]]
issuer = "{issuer}"
audiences = ["api"]
leeway = "30s"
"#,
        issuer = idp.issuer(),
        secret = secret_file().display(),
    );
    tw_config::load_str(&toml, "doctor.toml").expect("config")
}

/// The default client's secret in a file (tests cannot set environment variables).
fn secret_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tw-doctor-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("secret");
    std::fs::write(&path, "agent-basic-secret").expect("secret file");
    path
}

async fn diagnose(idp: &Idp, clock: Arc<dyn Clock>) -> Report {
    diagnose_config(&config(idp), clock).await
}

async fn diagnose_config(cfg: &tw_config::Config, clock: Arc<dyn Clock>) -> Report {
    Doctor::new(clock)
        .diagnose(cfg, "doctor.toml", &Options::default())
        .await
}

fn outcome(r: &Report, id: &str) -> (Status, Option<&'static str>) {
    let s = r
        .step(id, None)
        .unwrap_or_else(|| panic!("no step {id}: {r}"));
    (s.status, s.cause)
}

#[tokio::test]
async fn a_skewed_local_clock_is_named_as_the_cause() {
    let idp = Idp::start_default().await;

    // In step with the IdP: clock and claims pass.
    let r = diagnose(&idp, Arc::new(ManualClock::starting_now())).await;
    assert_eq!(outcome(&r, "clock"), (Status::Pass, None), "{r}");
    assert_eq!(outcome(&r, "claims"), (Status::Pass, None), "{r}");
    assert!(!r.failed(), "{r}");

    // An hour ahead: the fresh token looks expired; the doctor says why.
    let ahead = ManualClock::starting_now();
    ahead.advance(Duration::from_secs(3600));
    let r = diagnose(&idp, Arc::new(ahead)).await;
    assert_eq!(
        outcome(&r, "clock"),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );
    assert!(
        r.step("clock", None).unwrap().summary.contains("ahead"),
        "{r}"
    );
    assert_eq!(
        outcome(&r, "claims"),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );
    assert!(r.failed());

    // An hour behind: the token is not valid yet (iat in the future).
    let behind = ManualClock::starting_now();
    behind.set(tw_core::UnixTime::from_millis(
        behind.now().as_millis() - 3_600_000,
    ));
    let r = diagnose(&idp, Arc::new(behind)).await;
    assert_eq!(
        outcome(&r, "clock"),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );
    assert!(
        r.step("clock", None).unwrap().summary.contains("behind"),
        "{r}"
    );
    assert_eq!(
        outcome(&r, "claims"),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );

    // Within the leeway: a warning, not a failure.
    let slightly = ManualClock::starting_now();
    slightly.advance(Duration::from_secs(15));
    let r = diagnose(&idp, Arc::new(slightly)).await;
    assert_eq!(
        outcome(&r, "clock"),
        (Status::Warn, Some("clock_skew")),
        "{r}"
    );
    assert!(!r.failed(), "{r}");

    // No discovery (a fixed token URL), so no Date header: the token's iat tells.
    let ahead = ManualClock::starting_now();
    ahead.advance(Duration::from_secs(600));
    let fixed = config_with(&idp, &format!("token_url = \"{}\"", idp.token_url()));
    let r = diagnose_config(&fixed, Arc::new(ahead)).await;
    let clock = r.step("clock", None).unwrap();
    assert_eq!(
        (clock.status, clock.cause),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );
    assert!(clock.summary.contains("iat"), "{r}");
}
