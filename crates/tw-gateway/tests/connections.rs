//! Slow, idle and too many clients: `[gateway.connections]` closes slowloris connections and idle
//! keep-alive connections, caps requests per connection, and at the connection cap makes room
//! for new clients (probes among them) by closing the oldest connection that is not busy.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tw_testkit::Idp;

async fn gateway(idp: &Idp, up: &Upstream, connections: &str) -> RunningGateway {
    let extra = format!(
        "{}\n[gateway.connections]\n{connections}\n",
        route_toml("/api", &up.url())
    );
    RunningGateway::start(&gateway_config(&idp_gateway_toml(idp, "", &extra))).await
}

/// Waits until the server closes `s` (EOF or reset); how long that took.
async fn closed_after(s: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LIMIT, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {LIMIT:?}"),
        }
    }
}

async fn healthz(addr: SocketAddr) -> String {
    raw_request(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
}

#[tokio::test]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let gw = gateway(
        &idp,
        &up,
        "header_read_timeout = \"300ms\"\nidle_timeout = \"600ms\"\nmax_requests_per_connection = 2",
    )
    .await;

    // Slowloris: a header line every 100 ms never completes the head in time; the gateway
    // closes the connection while the client is still trickling.
    let slow = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut rd, mut wr) = slow.into_split();
    wr.write_all(b"GET /healthz HTTP/1.1\r\n")
        .await
        .expect("write");
    let trickle = async {
        for i in 0..100 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
        panic!("the slow client trickled headers for 10 s without being closed");
    };
    let closed = async {
        let mut buf = [0u8; 256];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        () = closed => {}
        () = trickle => {}
    }

    // A client that connects and sends nothing is closed too.
    let mut silent = TcpStream::connect(gw.addr).await.expect("connect");
    closed_after(&mut silent).await;

    // Keep-alive: served, then closed once idle; requests while busy are never cut.
    let mut keep = TcpStream::connect(gw.addr).await.expect("connect");
    keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut first = [0u8; 512];
    let n = keep.read(&mut first).await.expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    closed_after(&mut keep).await;

    // The second request on one connection is told the connection closes after it.
    let mut capped = TcpStream::connect(gw.addr).await.expect("connect");
    capped
        .write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .expect("write");
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, capped.read_to_end(&mut all))
        .await
        .expect("closed after the cap")
        .expect("read");
    let text = String::from_utf8_lossy(&all).to_lowercase();
    assert_eq!(text.matches("http/1.1 200").count(), 2, "{text}");
    assert!(text.contains("connection: close"), "{text}");

    // A request still in progress is not an idle connection: a slow upstream answer arrives
    // although it takes longer than the idle and header timeouts.
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let resp = send(client().get(gw.url("/api/slow")).bearer_auth(&token)).await;
    assert_eq!(resp.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn at_the_cap_the_oldest_waiting_connection_makes_room_and_busy_ones_are_kept() {
    let idp = Idp::start_default().await;
    let up = Upstream::start().await;
    let gw = gateway(
        &idp,
        &up,
        "header_read_timeout = \"20s\"\nmax_connections = 8",
    )
    .await;

    // Forty clients that never send a request: far more than the cap.
    let mut idle = Vec::new();
    for _ in 0..40 {
        idle.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    // Probes still get through, at once.
    for _ in 0..5 {
        let answer = healthz(gw.addr).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    // The oldest waiting clients were closed to make room.
    let mut closed = 0;
    for s in idle.iter_mut().take(20) {
        let mut b = [0u8; 1];
        if matches!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ) {
            closed += 1;
        }
    }
    assert!(closed >= 15, "only {closed} of the oldest were closed");
    drop(idle);

    // When every connection is busy, probes still get through on a small reserve, and anything
    // else there is 503 JSON at once rather than a hang.
    let token = idp_token(&idp, CLIENT_ID, CLIENT_SECRET).await;
    let mut busy = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(gw.addr).await.expect("connect");
        s.write_all(
            format!(
                "GET /api/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        busy.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answer = healthz(gw.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answer = raw_request(
        gw.addr,
        b"GET /api/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("\"code\":\"too_many_connections\""),
        "{answer}"
    );
    assert!(answer.to_lowercase().contains("retry-after: 1"), "{answer}");
    // Beyond the reserve, newcomers are answered 503 before any request is read.
    let mut held = Vec::new();
    for _ in 0..tw_http::connections::PROBE_RESERVE {
        held.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let answer = healthz(gw.addr).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(held);
    // The busy requests finish normally.
    for mut s in busy {
        let mut out = Vec::new();
        tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
            .await
            .expect("in time")
            .expect("read");
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    }
    gw.stop().await;
}

#[tokio::test]
async fn clients_that_stop_reading_or_sending_are_closed_while_busy() {
    use axum::Router;
    use axum::routing::{get, post};
    let idp = Idp::start_default().await;
    let big = tw_testkit::TestServer::start(
        Router::new()
            .route(
                "/public/big",
                get(|| async { vec![b'x'; 32 * 1024 * 1024] }),
            )
            .route(
                "/public/upload",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            ),
    )
    .await;
    let extra = format!(
        "exempt_paths = [\"/public/*\"]\n{}\n[gateway.connections]\nstall_timeout = \"300ms\"\n",
        route_toml("/public", &format!("http://{}", big.addr()))
    );
    let gw = RunningGateway::start(&gateway_config(&idp_gateway_toml(&idp, "", &extra))).await;

    // A client that asks for a large answer and never reads it.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer");
    let mut reader = socket.connect(gw.addr).await.expect("connect");
    reader
        .write_all(b"GET /public/big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(LIMIT, reader.read_to_end(&mut got))
        .await
        .expect("the stalled connection was closed");
    assert!(
        got.len() < 32 * 1024 * 1024,
        "the whole body arrived: not stalled?"
    );

    // A client that sends part of a body the upstream waits for, then stops.
    let mut sender = TcpStream::connect(gw.addr).await.expect("connect");
    sender
        .write_all(b"POST /public/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        .await
        .expect("write");
    closed_after(&mut sender).await;

    // Meanwhile the gateway serves others.
    let answer = healthz(gw.addr).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    gw.stop().await;
}
