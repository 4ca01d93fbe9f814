//! The agent's own header: the injected `Authorization`. Hop-by-hop and `X-Forwarded-*` handling
//! is shared with the gateway in [`tw_http::forward`].

use http::HeaderMap;
use http::header::{self, HeaderValue};
use std::net::SocketAddr;

/// The caller's headers prepared for the upstream ([`tw_http::forward::forwarded_request_headers`])
/// minus the caller's own `Authorization`, which the injected token replaces.
pub fn outbound_request_headers(headers: HeaderMap, peer: Option<SocketAddr>) -> HeaderMap {
    let mut headers = tw_http::forward::forwarded_request_headers(headers, peer);
    headers.remove(header::AUTHORIZATION);
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
    use http::header::HeaderName;

    #[test]
    fn the_callers_authorization_is_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer callers-own"),
            ("authorization", "Basic second"),
            ("connection", "close"),
            ("accept", "application/json"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_static(v),
            );
        }
        let out = outbound_request_headers(h, None);
        let mut names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x-forwarded-proto"]);
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
