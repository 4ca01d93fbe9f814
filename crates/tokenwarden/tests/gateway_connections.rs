//! `tokenwarden gateway` under a lowered open-file limit (256, as on small containers): 300 idle
//! clients cannot exhaust its descriptors, `/healthz` keeps answering, and the idle clients are
//! closed after `header_read_timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: Duration = Duration::from_secs(30);

async fn healthz(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn idle_clients_never_starve_healthz_under_a_low_descriptor_limit() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[gateway]
listen = "127.0.0.1:{port}"

[gateway.connections]
header_read_timeout = "2s"

[[gateway.issuers]]
issuer = "https://idp.example.invalid/realms/demo"
jwks_url = "http://127.0.0.1:9/jwks"
"#
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new("prlimit")
        .arg("--nofile=256:256")
        .arg(env!("CARGO_BIN_EXE_tokenwarden"))
        .args(["gateway", "--config", cfg.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("prlimit (util-linux) runs tokenwarden gateway");
    let mut up = false;
    for _ in 0..200 {
        if healthz(port)
            .await
            .is_some_and(|a| a.starts_with("HTTP/1.1 200"))
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway never answered /healthz");

    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    for i in 0..10 {
        let answer = healthz(port).await.unwrap_or_default();
        assert!(answer.starts_with("HTTP/1.1 200"), "probe {i}: {answer:?}");
    }
    // The newest idle client is closed by the header timeout, not kept forever.
    let last = idle.last_mut().unwrap();
    let mut b = [0u8; 1];
    let read = tokio::time::timeout(LIMIT, last.read(&mut b)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    drop(idle);
    let answer = healthz(port).await.unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");

    child.kill().await.unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(
        stderr.contains("max_connections lowered to fit the open-file limit"),
        "{stderr}"
    );
}
