//! File sinks: atomic, private, following new tokens; the one-shot mode; the command hook.

mod common;

use common::*;
use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tw_agent::Agent;
use tw_broker::Broker;
use tw_core::SystemClock;

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

fn sink_toml(h: &Harness, extra_sinks: &str) -> String {
    format!(
        r#"{profile}
[agent]
listen = "127.0.0.1:0"

[[agent.sinks]]
profile = "api"
path = "{raw}"

[[agent.sinks]]
profile = "api"
path = "{json}"
format = "json"
mode = "0640"
{extra_sinks}
"#,
        profile = h.profile_toml("api"),
        raw = h.path("token").display(),
        json = h.path("token.json").display(),
    )
}

#[tokio::test]
async fn sinks_hold_the_current_token_privately_and_follow_new_ones() {
    let h = Harness::start().await;
    let a = RunningAgent::start(&sink_toml(&h, ""), Arc::new(SystemClock)).await;
    let raw = h.path("token");
    let json = h.path("token.json");

    let first = a.token("api").await;
    let expect = first.access_token.expose().to_owned();
    eventually("the raw sink", || {
        std::fs::read_to_string(&raw).ok().as_deref() == Some(&expect)
    })
    .await;
    assert_eq!(mode_of(&raw), 0o600, "default mode");

    let refreshed = json_of(
        client()
            .post(a.api_url("/v1/token/api/refresh"))
            .send()
            .await
            .expect("send"),
    )
    .await;
    let second = refreshed["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    assert_ne!(second, expect);
    eventually("the raw sink to follow", || {
        std::fs::read_to_string(&raw).ok().as_deref() == Some(&second)
    })
    .await;
    eventually("the json sink to follow", || {
        std::fs::read_to_string(&json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v["access_token"] == second.as_str())
    })
    .await;
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("json");
    assert!(
        v["token_type"]
            .as_str()
            .expect("type")
            .eq_ignore_ascii_case("bearer")
    );
    assert_eq!(v["expires_at"], refreshed["expires_at"]);
    assert_eq!(mode_of(&json), 0o640, "configured mode");
    assert_eq!(mode_of(&raw), 0o600, "mode kept on rewrite");

    a.stop().await;
    let leftovers: Vec<_> = std::fs::read_dir(h.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn a_reader_never_sees_a_partial_or_readable_token_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token");
    // Different lengths, so a torn or truncated read cannot pass for a whole one.
    let versions: Vec<String> = ["a", "b", "c"]
        .iter()
        .zip([300_000, 900, 70_000])
        .map(|(c, n)| c.repeat(n))
        .collect();
    let valid: HashSet<String> = versions.iter().cloned().collect();

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path, dir) = (stop.clone(), path.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                if let Ok(text) = std::fs::read_to_string(&path) {
                    assert!(
                        valid.contains(&text),
                        "saw a partial token file ({} bytes)",
                        text.len()
                    );
                    reads += 1;
                }
                // Every file in the directory, temp files included, is private at all times.
                for entry in std::fs::read_dir(&dir).expect("dir").flatten() {
                    if let Ok(meta) = entry.metadata() {
                        assert_eq!(
                            meta.permissions().mode() & 0o077,
                            0,
                            "{:?} readable by others",
                            entry.file_name()
                        );
                    }
                }
            }
            reads
        })
    };

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for i in 0..400 {
            let body = versions[i % versions.len()].clone().into_bytes();
            tw_agent::sink::write_atomically(&path, body, 0o600)
                .await
                .expect("write");
        }
    });
    stop.store(true, Ordering::SeqCst);
    let reads = reader.join().expect("reader saw only whole, private files");
    assert!(reads > 0, "the reader observed the file");
}

#[tokio::test]
async fn once_writes_every_sink_and_runs_the_commands() {
    let h = Harness::start().await;
    let copy = h.path("copy-of-token");
    let extra = format!(
        r#"
[[agent.sinks]]
profile = "api"
path = "{hooked}"
command = ["cp", "{hooked}", "{copy}"]

[[agent.sinks]]
profile = "api"
path = "{failing}"
command = ["false"]

[[agent.sinks]]
profile = "api"
path = "{slow}"
command = ["sleep", "30"]
command_timeout = "200ms"
"#,
        hooked = h.path("hooked").display(),
        copy = copy.display(),
        failing = h.path("failing").display(),
        slow = h.path("slow").display(),
    );
    let cfg = load(&sink_toml(&h, &extra));
    let broker =
        Arc::new(Broker::from_profiles(&cfg.profiles, Arc::new(SystemClock)).expect("broker"));
    let agent = Agent::new(&cfg.agent, broker.clone(), None);
    tokio::time::timeout(Duration::from_secs(10), agent.write_sinks_once(LIMIT))
        .await
        .expect("returns although a command hangs")
        .expect("all sinks written");

    let token = std::fs::read_to_string(h.path("token")).expect("raw sink");
    jwt_claims(&token);
    for name in ["token.json", "hooked", "failing", "slow"] {
        assert!(h.path(name).is_file(), "{name} written");
    }
    assert_eq!(
        std::fs::read_to_string(&copy).expect("the command ran after the write"),
        token
    );
    assert_eq!(h.token_requests().await, 1, "one token for all sinks");
}

#[tokio::test]
async fn once_fails_at_once_and_clearly_when_the_idp_rejects_the_client() {
    let h = Harness::start().await;
    h.idp.disable_client(CLIENT_ID).await;
    let cfg = load(&sink_toml(&h, ""));
    let broker =
        Arc::new(Broker::from_profiles(&cfg.profiles, Arc::new(SystemClock)).expect("broker"));
    let agent = Agent::new(&cfg.agent, broker, None);
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        agent.write_sinks_once(Duration::from_secs(600)),
    )
    .await
    .expect("a permanent failure does not wait out the patience")
    .expect_err("the client is disabled");
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(err.code(), "idp_invalid_client", "{err:?}");
    assert_eq!(err.context_value("profile"), Some("api"));
    let file = err.context_value("file").expect("names the file");
    assert!(
        file.ends_with("token") || file.ends_with("token.json"),
        "{file}"
    );
    assert!(!h.path("token").exists());
}
