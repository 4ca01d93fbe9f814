//! Who may reach the token API and the proxy: loopback or a unix socket unless `allow_remote`,
//! and with `allow_remote` only callers presenting the caller key. Real listeners (a wildcard
//! address, port 0, reached through 127.0.0.1), a real IdP, a real upstream.

mod common;

use common::*;
use std::path::Path;
use std::sync::Arc;
use tw_config::ListenAddr;
use tw_core::SystemClock;

const KEY: &str = "9f2c1e7a4b6d8f0a1c3e5a7b9d1f3a5c";
const ROTATED_KEY: &str = "0d4e6f8a2b4c6d8e0f2a4b6c8d0e2f4a";

fn clock() -> Arc<SystemClock> {
    Arc::new(SystemClock)
}

/// Writes `value` to `path` the way Kubernetes updates a mounted Secret: a new file renamed
/// over the old one, so a reader never sees half a key.
fn write_key(path: &Path, value: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value).expect("write key");
    std::fs::rename(&tmp, path).expect("rename key");
}

fn key_file(h: &Harness) -> std::path::PathBuf {
    let path = h.path("caller-key");
    write_key(&path, &format!("{KEY}\n"));
    path
}

/// `listen`, `allow_remote` and `caller_key` lines for one listener section.
fn remote(listen: &str, key: &Path) -> String {
    format!(
        "listen = \"{listen}\"\nallow_remote = true\ncaller_key = {{ file = \"{}\" }}\n",
        key.display()
    )
}

fn api_only(h: &Harness, agent: &str) -> String {
    format!("{}\n[agent]\n{agent}\n", h.profile_toml("api"))
}

fn with_proxy(h: &Harness, agent: &str, proxy: &str, upstream: &str) -> String {
    format!(
        "{}\n[agent]\n{agent}\n[agent.proxy]\n{proxy}\n[[agent.proxy.routes]]\nprefix = \"/up/\"\nupstream = \"{upstream}\"\nprofile = \"api\"\n",
        h.profile_toml("api")
    )
}

#[tokio::test]
async fn reachable_addresses_are_refused_at_start_before_anything_listens() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let port = closed_port().await;
    let local = with_proxy(
        &h,
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"",
        &up.url(),
    );
    for (proxy, key) in [(false, "agent.listen"), (true, "agent.proxy.listen")] {
        // Through loading: the config error names the file and the key.
        let reachable = if proxy {
            with_proxy(
                &h,
                "listen = \"127.0.0.1:0\"",
                &format!("listen = \"0.0.0.0:{port}\""),
                &up.url(),
            )
        } else {
            with_proxy(
                &h,
                &format!("listen = \"0.0.0.0:{port}\""),
                "listen = \"127.0.0.1:0\"",
                &up.url(),
            )
        };
        let err = tw_config::load_str(&reachable, "agent.toml").expect_err(key);
        assert_eq!(err.context_value("key"), Some(key));
        assert_eq!(err.context_value("file"), Some("agent.toml"));
        assert!(err.message().contains("allow_remote = true"), "{err}");

        // A config changed in code after loading is refused by the agent itself, for IPv4 and
        // IPv6 wildcards, and nothing is left listening.
        for addr in [format!("0.0.0.0:{port}"), format!("[::]:{port}")] {
            let mut cfg = load(&local);
            match proxy {
                true => cfg.agent.proxy.as_mut().expect("proxy").listen = addr.clone(),
                false => cfg.agent.listen = addr.clone(),
            }
            let err = match bind_config(&cfg, clock()).await {
                Ok(_) => panic!("{key} = {addr} must be refused"),
                Err(e) => e,
            };
            assert_eq!(err.code(), "config_invalid", "{err}");
            assert_eq!(err.context_value("key"), Some(key), "{err}");
            assert!(
                err.message().contains("reachable from other hosts"),
                "{err}"
            );
            let connect = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
            assert!(connect.is_err(), "{addr}: something listens on {port}");
        }
    }
}

#[tokio::test]
async fn loopback_v4_v6_and_unix_sockets_start_without_a_flag_and_serve() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let sockets = tempfile::tempdir().expect("tempdir");
    let api_sock = sockets.path().join("agent.sock");
    let proxy_sock = sockets.path().join("proxy.sock");
    let layouts = [
        ("127.0.0.1:0".to_owned(), "[::1]:0".to_owned()),
        ("[::1]:0".to_owned(), "127.0.0.1:0".to_owned()),
        (
            format!("unix:{}", api_sock.display()),
            format!("unix:{}", proxy_sock.display()),
        ),
    ];
    for (api, proxy) in layouts {
        let toml = with_proxy(
            &h,
            &format!("listen = \"{api}\""),
            &format!("listen = \"{proxy}\""),
            &up.url(),
        );
        let a = RunningAgent::start(&toml, clock()).await;
        a.token("api").await;
        let reply = raw_get(&Dest::from(&a.api), "/v1/token/api", &[]).await;
        assert_eq!(reply.status, 200, "{api}: {}", reply.body);
        jwt_claims(reply.json()["access_token"].as_str().expect("token"));
        let proxy_dest = Dest::from(a.proxy_listen.as_ref().expect("proxy"));
        let reply = raw_get(&proxy_dest, "/up/x", &[]).await;
        assert_eq!(reply.status, 200, "{proxy}: {}", reply.body);
        a.stop().await;
    }
    assert_eq!(up.seen().len(), 3);
}

#[tokio::test]
async fn allow_remote_without_a_caller_key_is_refused_at_start() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    for (proxy, key) in [
        (false, "agent.caller_key"),
        (true, "agent.proxy.caller_key"),
    ] {
        let open = "listen = \"0.0.0.0:0\"\nallow_remote = true";
        let toml = if proxy {
            with_proxy(&h, "listen = \"127.0.0.1:0\"", open, &up.url())
        } else {
            api_only(&h, open)
        };
        let err = tw_config::load_str(&toml, "agent.toml").expect_err(key);
        assert_eq!(err.context_value("key"), Some(key), "{err}");
        assert!(err.message().contains("X-Tokenwarden-Key"), "{err}");

        // And by the agent, for a config changed after loading.
        let mut cfg = load(&with_proxy(
            &h,
            "listen = \"127.0.0.1:0\"",
            "listen = \"127.0.0.1:0\"",
            &up.url(),
        ));
        match proxy {
            true => cfg.agent.proxy.as_mut().expect("proxy").allow_remote = true,
            false => cfg.agent.allow_remote = true,
        }
        let err = match bind_config(&cfg, clock()).await {
            Ok(_) => panic!("{key}: allow_remote without a key must be refused"),
            Err(e) => e,
        };
        assert_eq!(err.context_value("key"), Some(key), "{err}");
    }
}

#[tokio::test]
async fn a_missing_weak_or_unset_caller_key_stops_the_start() {
    let h = Harness::start().await;
    let weak = h.path("weak-key");
    std::fs::write(&weak, "short-key").expect("write");
    let spaced = h.path("spaced-key");
    std::fs::write(&spaced, "a key with spaces in it, long enough").expect("write");
    let cases = [
        (
            format!(
                "caller_key = {{ file = \"{}\" }}",
                h.path("absent").display()
            ),
            "secret_unavailable",
        ),
        (
            format!("caller_key = {{ file = \"{}\" }}", weak.display()),
            "caller_key_weak",
        ),
        (
            format!("caller_key = {{ file = \"{}\" }}", spaced.display()),
            "caller_key_weak",
        ),
        (
            "caller_key = { env = \"TW_TEST_CALLER_KEY_NEVER_SET\" }".to_owned(),
            "secret_unavailable",
        ),
    ];
    for (line, code) in cases {
        let toml = api_only(
            &h,
            &format!("listen = \"0.0.0.0:0\"\nallow_remote = true\n{line}"),
        );
        let err = match bind_agent(&toml, clock()).await {
            Ok(_) => panic!("{line}: must not start"),
            Err(e) => e,
        };
        assert_eq!(err.code(), code, "{line}: {err}");
        assert_eq!(err.context_value("key"), Some("agent.caller_key"), "{err}");
        assert!(!err.to_string().contains("short-key"), "{err}");
    }
}

/// Header lines of a raw request: name and value bytes.
type Headers = Vec<(&'static str, Vec<u8>)>;

/// Requests that must not get through a listener that wants `KEY` in `X-Tokenwarden-Key`, with
/// the code each must get. Sent raw, byte for byte.
fn hostile_requests() -> Vec<(&'static str, Headers, &'static str)> {
    let k = |v: &str| v.as_bytes().to_vec();
    let missing = "caller_key_missing";
    let invalid = "caller_key_invalid";
    vec![
        ("no header", vec![], missing),
        (
            "as a bearer token",
            vec![("Authorization", k(&format!("Bearer {KEY}")))],
            missing,
        ),
        (
            "in a cookie",
            vec![("Cookie", k(&format!("X-Tokenwarden-Key={KEY}")))],
            missing,
        ),
        (
            "name with a suffix",
            vec![("X-Tokenwarden-Key2", k(KEY))],
            missing,
        ),
        ("name plural", vec![("X-Tokenwarden-Keys", k(KEY))], missing),
        (
            "underscore for dash",
            vec![("X-Tokenwarden_Key", k(KEY))],
            missing,
        ),
        ("no X- prefix", vec![("Tokenwarden-Key", k(KEY))], missing),
        (
            "prefixed name",
            vec![("X-Forwarded-X-Tokenwarden-Key", k(KEY))],
            missing,
        ),
        (
            "wrong key",
            vec![("X-Tokenwarden-Key", k(ROTATED_KEY))],
            invalid,
        ),
        ("empty", vec![("X-Tokenwarden-Key", vec![])], invalid),
        (
            "upper-cased key",
            vec![("X-Tokenwarden-Key", k(&KEY.to_uppercase()))],
            invalid,
        ),
        (
            "with a scheme",
            vec![("X-Tokenwarden-Key", k(&format!("Bearer {KEY}")))],
            invalid,
        ),
        (
            "truncated",
            vec![("X-Tokenwarden-Key", k(&KEY[..KEY.len() - 1]))],
            invalid,
        ),
        (
            "one byte more",
            vec![("X-Tokenwarden-Key", k(&format!("{KEY}0")))],
            invalid,
        ),
        (
            "a prefix of it",
            vec![("X-Tokenwarden-Key", k(&KEY[..16]))],
            invalid,
        ),
        (
            "twice in one value",
            vec![("X-Tokenwarden-Key", k(&format!("{KEY},{KEY}")))],
            invalid,
        ),
        (
            "percent-encoded",
            vec![(
                "X-Tokenwarden-Key",
                k(&KEY.bytes().map(|b| format!("%{b:02X}")).collect::<String>()),
            )],
            invalid,
        ),
        (
            "obs-text bytes",
            vec![("X-Tokenwarden-Key", [KEY.as_bytes(), b"\xff\xfe"].concat())],
            invalid,
        ),
        (
            "right then wrong",
            vec![
                ("X-Tokenwarden-Key", k(KEY)),
                ("X-Tokenwarden-Key", k(ROTATED_KEY)),
            ],
            invalid,
        ),
        (
            "wrong then right",
            vec![
                ("X-Tokenwarden-Key", k(ROTATED_KEY)),
                ("X-Tokenwarden-Key", k(KEY)),
            ],
            invalid,
        ),
        (
            "right twice",
            vec![("X-Tokenwarden-Key", k(KEY)), ("x-tokenwarden-key", k(KEY))],
            invalid,
        ),
        (
            "huge",
            vec![("X-Tokenwarden-Key", vec![b'a'; 16 * 1024])],
            invalid,
        ),
    ]
}

/// Sends every hostile request to `target` on `dest`; each must be refused with its code, a
/// challenge naming the header, and a body that echoes nothing the caller sent.
async fn assert_all_refused(dest: &Dest, target: &str) {
    for (what, headers, code) in hostile_requests() {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let reply = raw_get(dest, target, &headers).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        assert_eq!(reply.code(), code, "{what}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Tokenwarden-Key header=\"X-Tokenwarden-Key\""),
            "{what}"
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
        assert!(
            !reply.body.contains(KEY) && !reply.body.contains(&KEY[..16]),
            "{what}: echoed"
        );
        assert!(!reply.body.contains(ROTATED_KEY), "{what}: echoed");
    }
    // Control bytes after the key: the HTTP parser refuses the request before the agent sees it.
    for control in [b"\x7f".as_slice(), b"\x00", b"\x01"] {
        let value = [KEY.as_bytes(), control].concat();
        let reply = raw_get(dest, target, &[("X-Tokenwarden-Key", &value)]).await;
        assert_eq!(reply.status, 400, "{control:?}: {}", reply.body);
    }
}

#[tokio::test]
async fn remote_token_api_serves_only_callers_with_the_key() {
    let h = Harness::start().await;
    let key = key_file(&h);
    let a = RunningAgent::start(&api_only(&h, &remote("0.0.0.0:0", &key)), clock()).await;
    assert!(matches!(a.api, ListenAddr::Tcp(s) if s.ip().is_unspecified()));
    a.token("api").await;
    let dest = Dest::Tcp(a.api_tcp());

    assert_all_refused(&dest, "/v1/token/api").await;
    // Refused before anything else is looked at: no profile names, no parameter errors.
    for target in ["/v1/token/nope", "/v1/token/api?min_ttl=soon"] {
        let reply = raw_get(&dest, target, &[]).await;
        assert_eq!(reply.code(), "caller_key_missing", "{target}");
    }
    let refresh = client()
        .post(a.api_url("/v1/token/api/refresh"))
        .send()
        .await
        .expect("send");
    assert_eq!(refresh.status(), 401, "a forced refresh needs the key too");
    let reply = raw_get(
        &dest,
        &format!("/v1/token/api?x-tokenwarden-key={KEY}"),
        &[],
    )
    .await;
    assert_eq!(
        reply.code(),
        "caller_key_missing",
        "a key in the query is no key"
    );

    // The right key, however the header name is cased, and addressed by a service name as
    // containers do (no DNS-rebinding Host check with allow_remote: the key replaces it).
    for (name, host) in [
        ("X-Tokenwarden-Key", "127.0.0.1"),
        ("x-tokenwarden-key", "tokenwarden:8790"),
        ("X-TOKENWARDEN-KEY", "agent.svc.cluster.local"),
    ] {
        let reply = raw_get(
            &dest,
            "/v1/token/api",
            &[(name, KEY.as_bytes()), ("Host", host.as_bytes())],
        )
        .await;
        assert_eq!(reply.status, 200, "{name} / {host}: {}", reply.body);
        jwt_claims(reply.json()["access_token"].as_str().expect("token"));
    }

    // Through an ordinary client too, and the forced refresh.
    let c = client();
    let ok = c
        .post(a.api_url("/v1/token/api/refresh"))
        .header("X-Tokenwarden-Key", KEY)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);

    // Probes answer everyone: orchestrators call them without secrets, and they hold no token.
    for probe in ["/healthz", "/readyz", "/metrics"] {
        let reply = raw_get(&dest, probe, &[]).await;
        assert_eq!(reply.status, 200, "{probe}: {}", reply.body);
        assert!(!reply.body.contains("eyJ"), "{probe} shows no token");
    }
    a.stop().await;
}

#[tokio::test]
async fn rotating_the_key_file_needs_no_restart_and_an_unreadable_key_admits_nobody() {
    let h = Harness::start().await;
    let key = key_file(&h);
    let a = RunningAgent::start(&api_only(&h, &remote("0.0.0.0:0", &key)), clock()).await;
    let dest = Dest::Tcp(a.api_tcp());
    let with = |k: &'static str| [("X-Tokenwarden-Key", k.as_bytes())];
    assert_eq!(
        raw_get(&dest, "/v1/token/api", &with(KEY)).await.status,
        200
    );

    write_key(&key, ROTATED_KEY);
    let old = raw_get(&dest, "/v1/token/api", &with(KEY)).await;
    assert_eq!(
        (old.status, old.code().as_str()),
        (401, "caller_key_invalid")
    );
    assert_eq!(
        raw_get(&dest, "/v1/token/api", &with(ROTATED_KEY))
            .await
            .status,
        200
    );

    // A key file gone or turned weak: every caller is refused (the operator's fault, so 500 and
    // not 401), nobody gets a token, and the answer does not say where the key lives.
    for broken in [None, Some("short")] {
        match broken {
            None => std::fs::remove_file(&key).expect("remove"),
            Some(v) => write_key(&key, v),
        }
        for k in [KEY, ROTATED_KEY, "short"] {
            let reply = raw_get(
                &dest,
                "/v1/token/api",
                &[("X-Tokenwarden-Key", k.as_bytes())],
            )
            .await;
            assert_eq!(reply.status, 500, "{broken:?}: {}", reply.body);
            assert_eq!(reply.code(), "caller_key_unavailable");
            assert!(
                !reply.body.contains(&key.display().to_string()),
                "{}",
                reply.body
            );
        }
    }
    write_key(&key, KEY);
    assert_eq!(
        raw_get(&dest, "/v1/token/api", &with(KEY)).await.status,
        200
    );
    a.stop().await;
}

#[tokio::test]
async fn a_caller_key_on_loopback_and_on_a_unix_socket_is_required_too() {
    let h = Harness::start().await;
    let key = key_file(&h);
    let sock = h.path("agent.sock");
    for listen in ["127.0.0.1:0".to_owned(), format!("unix:{}", sock.display())] {
        let toml = api_only(
            &h,
            &format!(
                "listen = \"{listen}\"\ncaller_key = {{ file = \"{}\" }}",
                key.display()
            ),
        );
        let a = RunningAgent::start(&toml, clock()).await;
        let dest = Dest::from(&a.api);
        assert_all_refused(&dest, "/v1/token/api").await;
        let ok = raw_get(
            &dest,
            "/v1/token/api",
            &[("X-Tokenwarden-Key", KEY.as_bytes())],
        )
        .await;
        assert_eq!(ok.status, 200, "{listen}: {}", ok.body);
        // Without allow_remote the DNS-rebinding check stays, key or not (TCP only).
        let rebound = raw_get(
            &dest,
            "/v1/token/api",
            &[
                ("X-Tokenwarden-Key", KEY.as_bytes()),
                ("Host", b"rebound.example:8790"),
            ],
        )
        .await;
        match &a.api {
            ListenAddr::Tcp(_) => assert_eq!(rebound.code(), "host_not_allowed"),
            ListenAddr::Unix(_) => assert_eq!(rebound.status, 200),
        }
        a.stop().await;
    }
}

#[tokio::test]
async fn remote_proxy_forwards_only_callers_with_the_key_and_never_the_key_itself() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let key = key_file(&h);
    let toml = with_proxy(
        &h,
        "listen = \"127.0.0.1:0\"",
        &remote("0.0.0.0:0", &key),
        &up.url(),
    );
    let a = RunningAgent::start(&toml, clock()).await;
    let token = a.token("api").await;
    let proxy = a.proxy.expect("proxy");
    let dest = Dest::Tcp(proxy);

    assert_all_refused(&dest, "/up/data").await;
    // Unknown routes are not revealed to callers without the key.
    assert_eq!(
        raw_get(&dest, "/nowhere", &[]).await.code(),
        "caller_key_missing"
    );
    assert!(
        up.seen().is_empty(),
        "nothing reached the upstream: {:?}",
        up.seen()
    );

    let resp = client()
        .get(format!("http://{proxy}/up/data?q=1"))
        .header("X-Tokenwarden-Key", KEY)
        .header("Host", "tokenwarden:8791")
        .header("Authorization", "Bearer callers-own")
        .header("X-Other", "kept")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let seen = up.seen();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.path_and_query, "/up/data?q=1");
    let injected = format!("Bearer {}", token.access_token.expose());
    assert_eq!(s.authorization.as_deref(), Some(injected.as_str()));
    assert!(
        s.headers.iter().any(|(k, v)| k == "x-other" && v == "kept"),
        "{:?}",
        s.headers
    );
    for (name, value) in &s.headers {
        assert!(!name.contains("tokenwarden"), "{name} reached the upstream");
        assert!(
            !value.contains(KEY),
            "the key reached the upstream in {name}"
        );
    }
    a.stop().await;
}

#[tokio::test]
async fn the_proxy_never_forwards_its_key_header_and_checks_the_host_on_loopback() {
    let h = Harness::start().await;
    let up = Upstream::start().await;
    let key = key_file(&h);
    // No key on the proxy, a custom header name on the token API's listener.
    let toml = with_proxy(
        &h,
        &format!(
            "listen = \"127.0.0.1:0\"\ncaller_key = {{ file = \"{}\" }}\ncaller_key_header = \"X-Agent-Key\"",
            key.display()
        ),
        "listen = \"127.0.0.1:0\"",
        &up.url(),
    );
    let a = RunningAgent::start(&toml, clock()).await;
    a.token("api").await;
    let proxy = Dest::Tcp(a.proxy.expect("proxy"));

    // Sent to the proxy by mistake, the key header is dropped, not forwarded.
    let reply = raw_get(&proxy, "/up/x", &[("X-Tokenwarden-Key", KEY.as_bytes())]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = up.seen();
    assert!(
        seen[0]
            .headers
            .iter()
            .all(|(k, v)| k != "x-tokenwarden-key" && !v.contains(KEY)),
        "{:?}",
        seen[0].headers
    );

    // A loopback proxy refuses requests addressed to a DNS name (a rebinding page), before the
    // upstream sees anything.
    let rebound = raw_get(&proxy, "/up/x", &[("Host", b"rebound.example:8791")]).await;
    assert_eq!(
        (rebound.status, rebound.code().as_str()),
        (403, "host_not_allowed")
    );
    assert_eq!(up.seen().len(), 1);
    let local = raw_get(&proxy, "/up/x", &[("Host", b"localhost:8791")]).await;
    assert_eq!(local.status, 200);

    // The API wants its key in the configured header; the default name is just another header.
    let api = Dest::from(&a.api);
    let wrong_name = raw_get(
        &api,
        "/v1/token/api",
        &[("X-Tokenwarden-Key", KEY.as_bytes())],
    )
    .await;
    assert_eq!(wrong_name.code(), "caller_key_missing");
    assert_eq!(
        wrong_name.header("www-authenticate"),
        Some("Tokenwarden-Key header=\"X-Agent-Key\"")
    );
    let ok = raw_get(&api, "/v1/token/api", &[("X-Agent-Key", KEY.as_bytes())]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    a.stop().await;
}

#[tokio::test]
async fn an_ipv6_wildcard_with_allow_remote_wants_the_key_too() {
    let h = Harness::start().await;
    let key = key_file(&h);
    let a = RunningAgent::start(&api_only(&h, &remote("[::]:0", &key)), clock()).await;
    assert!(matches!(a.api, ListenAddr::Tcp(s) if s.is_ipv6() && s.ip().is_unspecified()));
    let dest = Dest::Tcp(a.api_tcp());
    let refused = raw_get(&dest, "/v1/token/api", &[("Host", b"[::1]")]).await;
    assert_eq!(refused.code(), "caller_key_missing");
    let ok = raw_get(
        &dest,
        "/v1/token/api",
        &[("X-Tokenwarden-Key", KEY.as_bytes())],
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    a.stop().await;
}
