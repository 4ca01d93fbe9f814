//! Clock skew, through the library with an injected clock, against the real test IdP: the IdP's
//! `Date` header and the token's times against a local clock that is off.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
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

/// A clock `secs` ahead of the real time (behind when negative).
fn clock_off_by(secs: i64) -> ManualClock {
    let clock = ManualClock::starting_now();
    clock.set(tw_core::UnixTime::from_millis(
        clock.now().as_millis() + secs * 1000,
    ));
    clock
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
    let r = diagnose(&idp, Arc::new(clock_off_by(0))).await;
    assert_eq!(outcome(&r, "clock"), (Status::Pass, None), "{r}");
    assert_eq!(outcome(&r, "claims"), (Status::Pass, None), "{r}");
    assert!(!r.failed(), "{r}");

    // An hour ahead: the fresh token looks expired; an hour behind: it is not valid yet (iat in
    // the future). Either way the doctor names the skew as the cause of the claims' refusal.
    for (offset_secs, direction) in [(3600, "ahead"), (-3600, "behind")] {
        let r = diagnose(&idp, Arc::new(clock_off_by(offset_secs))).await;
        assert_eq!(
            outcome(&r, "clock"),
            (Status::Fail, Some("clock_skew")),
            "{r}"
        );
        assert!(
            r.step("clock", None).unwrap().summary.contains(direction),
            "{r}"
        );
        assert_eq!(
            outcome(&r, "claims"),
            (Status::Fail, Some("clock_skew")),
            "{r}"
        );
        assert!(r.failed());
    }

    // Within the leeway: a warning, not a failure.
    let r = diagnose(&idp, Arc::new(clock_off_by(15))).await;
    assert_eq!(
        outcome(&r, "clock"),
        (Status::Warn, Some("clock_skew")),
        "{r}"
    );
    assert!(!r.failed(), "{r}");

    // No discovery (a fixed token URL), so no Date header: the token's iat tells.
    let fixed = config_with(&idp, &format!("token_url = \"{}\"", idp.token_url()));
    let r = diagnose_config(&fixed, Arc::new(clock_off_by(600))).await;
    let clock = r.step("clock", None).unwrap();
    assert_eq!(
        (clock.status, clock.cause),
        (Status::Fail, Some("clock_skew")),
        "{r}"
    );
    assert!(clock.summary.contains("iat"), "{r}");
}
