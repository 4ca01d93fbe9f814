//! Header rewriting on the way through the proxy (RFC 9110 §7.6.1 hop-by-hop fields).

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};
use std::net::SocketAddr;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes `Connection`, the fields it names, and the fixed hop-by-hop set (incl. all `Proxy-*`).
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy_fields: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_fields {
        headers.remove(name);
    }
}

/// Prepares the caller's headers for the upstream: hop-by-hop fields and the caller's own
/// `Authorization` go, `Host` is left to the client (the upstream's), `X-Forwarded-*` are set.
pub fn outbound_request_headers(mut headers: HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
    remove_hop_by_hop(&mut headers);
    headers.remove(header::AUTHORIZATION);
    let host = headers.remove(header::HOST);

    if let Some(peer) = peer {
        let ip = peer.ip().to_string();
        let chain = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
            _ => ip,
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            headers.insert(X_FORWARDED_FOR.clone(), v);
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
    headers
}

/// `Authorization: <type> <token>`, marked sensitive so hyper and any header dump skip it.
pub fn authorization(token_type: &str, token: &str) -> Option<HeaderValue> {
    // OAuth servers send `bearer` too; upstreams expect the canonical `Bearer`.
    let scheme = if token_type.eq_ignore_ascii_case("bearer") || token_type.is_empty() {
        "Bearer"
    } else {
        token_type
    };
    let mut v = HeaderValue::from_str(&format!("{scheme} {token}")).ok()?;
    v.set_sensitive(true);
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_fields_and_caller_authorization_are_dropped() {
        let h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("authorization", "Bearer callers-own"),
            ("authorization", "Basic second"),
            ("host", "127.0.0.1:8791"),
            ("x-forwarded-for", "10.1.1.1"),
            ("accept", "application/json"),
        ]);
        let out = outbound_request_headers(h, Some("127.0.0.1:5555".parse().expect("addr")));
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "accept",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto"
            ],
        );
        assert_eq!(out["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(out["x-forwarded-proto"], "http");
        assert_eq!(out["x-forwarded-host"], "127.0.0.1:8791");
    }

    #[test]
    fn authorization_is_sensitive_and_canonical() {
        let v = authorization("bearer", "abc").expect("value");
        assert_eq!(v, "Bearer abc");
        assert!(v.is_sensitive());
        assert_eq!(authorization("DPoP", "abc").expect("value"), "DPoP abc");
        assert!(authorization("Bearer", "bad\ntoken").is_none());
    }
}
