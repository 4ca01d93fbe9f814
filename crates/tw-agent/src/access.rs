//! Who may call a listener of the agent (the token API or the proxy).
//!
//! - Only loopback or a unix socket, unless the config says `allow_remote = true`
//!   ([`check_listener_access`](crate::settings::check_listener_access), at start).
//! - The caller key (required with `allow_remote`, optional otherwise): every request must carry
//!   it in its header, exactly once; compared in constant time; the header is removed before the
//!   request goes further (so the proxy never forwards it), and never logged.
//! - On listeners that are not `allow_remote`, the DNS-rebinding check: over TCP, the `Host` must
//!   be an IP address or `localhost`. With `allow_remote` callers address the agent by a service
//!   name (`tokenwarden:8790`), and the key — which a rebinding page cannot have — takes its place.

use crate::metrics_names::METRIC_CALLERS_REFUSED;
use crate::settings::ListenerAccess;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use http::header::{HOST, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tw_core::{Error, ErrorKind, Secret};
use tw_core::{ListenAddr, SecretRef};
use tw_http::{ApiError, PeerAddr};

/// Shortest caller key accepted: guessing must stay out of reach.
pub const MIN_CALLER_KEY_LEN: usize = 16;

/// The checks of one listener, built from its config section. Cheap to clone.
#[derive(Clone)]
pub struct CallerAccess {
    inner: Arc<Inner>,
}

struct Inner {
    listen: ListenAddr,
    /// `api` or `proxy`, the metrics label.
    listener: &'static str,
    /// The listener in words, for messages.
    what: &'static str,
    /// The DNS-rebinding `Host` check (off with `allow_remote`).
    local_host_only: bool,
    /// Removed from every request, whether a key is required or not.
    header: HeaderName,
    /// The header as configured (`X-Tokenwarden-Key`), for messages.
    header_display: String,
    key: Option<CallerKey>,
}

struct CallerKey {
    secret: SecretRef,
    /// The config key, e.g. `agent.caller_key`, for messages.
    config_key: String,
}

impl CallerAccess {
    /// Checks the section (the same rules as config loading, for configs built in code) and
    /// reads the caller key once, so a missing or weak key stops the start. `listener` names it
    /// in metrics: `api` or `proxy`.
    pub fn from_config(access: &ListenerAccess<'_>, listener: &'static str) -> Result<Self, Error> {
        let listen = crate::settings::check_listener_access(access).map_err(|p| p.into_error())?;
        let header_key = access.key("caller_key_header");
        let header = HeaderName::from_bytes(access.caller_key_header.as_bytes()).map_err(|_| {
            Error::config(
                tw_core::CONFIG_INVALID,
                format!("{header_key}: not a valid HTTP header name"),
            )
            .with("key", header_key)
        })?;
        let key = match access.caller_key {
            Some(secret) => {
                let key = CallerKey {
                    secret: secret.clone(),
                    config_key: access.key("caller_key"),
                };
                key.expected()?;
                Some(key)
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                listen,
                listener,
                what: access.what,
                local_host_only: !access.allow_remote,
                header,
                header_display: access.caller_key_header.to_owned(),
                key,
            }),
        })
    }

    /// The address to bind.
    pub fn listen(&self) -> &ListenAddr {
        &self.inner.listen
    }

    /// Whether callers must present the caller key.
    pub fn requires_key(&self) -> bool {
        self.inner.key.is_some()
    }

    /// Runs the checks; on success the request has lost its key header.
    fn admit(&self, req: &mut Request) -> Result<(), ApiError> {
        let inner = &self.inner;
        let over_tcp = req
            .extensions()
            .get::<ConnectInfo<PeerAddr>>()
            .is_some_and(|c| c.0.0.is_some());
        if inner.local_host_only && over_tcp && !host_is_local(req.headers()) {
            return Err(self.refused(ApiError::new(Error::new(
                ErrorKind::Forbidden,
                "host_not_allowed",
                format!(
                    "{} answers only to requests addressed to an IP address or localhost",
                    inner.what
                ),
            ))));
        }
        if let Some(key) = &inner.key {
            key.verify(req.headers(), &inner.header, &inner.header_display)
                .map_err(|e| self.refused(self.challenge(e)))?;
        }
        req.headers_mut().remove(&inner.header);
        Ok(())
    }

    /// 401s carry a challenge naming the header to use (RFC 9110 requires one on a 401).
    fn challenge(&self, e: Error) -> ApiError {
        let is_401 = e.kind() == ErrorKind::Unauthenticated;
        let api = ApiError::new(e);
        if !is_401 {
            return api;
        }
        match HeaderValue::from_str(&format!(
            "Tokenwarden-Key header=\"{}\"",
            self.inner.header_display
        )) {
            Ok(v) => api.with_challenge(v),
            Err(_) => api,
        }
    }

    fn refused(&self, e: ApiError) -> ApiError {
        let code = e.error().code();
        metrics::counter!(METRIC_CALLERS_REFUSED, "listener" => self.inner.listener, "code" => code)
            .increment(1);
        tracing::debug!(listener = self.inner.listener, code, "caller refused");
        e
    }
}

/// The checks as an axum middleware:
/// `router.layer(axum::middleware::from_fn_with_state(access, guard))` (or `route_layer`).
pub async fn guard(State(access): State<CallerAccess>, mut req: Request, next: Next) -> Response {
    match access.admit(&mut req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

impl CallerKey {
    /// The key as configured now (a file is read again, so rotation needs no restart).
    fn expected(&self) -> Result<Secret, Error> {
        let secret = self.secret.resolve(&self.config_key)?;
        let value = secret.expose();
        if value.len() < MIN_CALLER_KEY_LEN || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::config(
                "caller_key_weak",
                format!(
                    "`{}`: the key at {} must be at least {MIN_CALLER_KEY_LEN} visible ASCII characters without spaces, e.g. from `openssl rand -hex 32`",
                    self.config_key,
                    self.secret.describe()
                ),
            )
            .with("key", self.config_key.clone()));
        }
        Ok(secret)
    }

    /// `shown` is the header's name as configured, for messages.
    fn verify(&self, headers: &HeaderMap, header: &HeaderName, shown: &str) -> Result<(), Error> {
        let mut presented = headers.get_all(header).iter();
        let value = match (presented.next(), presented.next()) {
            (None, _) => {
                return Err(Error::new(
                    ErrorKind::Unauthenticated,
                    "caller_key_missing",
                    format!("send the caller key in the {shown} header"),
                )
                .with("header", shown));
            }
            (Some(v), None) => v,
            (Some(_), Some(_)) => return Err(invalid(shown, "send the caller key once")),
        };
        let expected = self.expected().map_err(|e| {
            // The detail (file path, reason) is for the operator, not the caller.
            tracing::warn!(key = %self.config_key, code = e.code(), error = %e, "cannot read the caller key; refusing every caller");
            Error::config(
                "caller_key_unavailable",
                "the agent cannot read its caller key; see its log",
            )
        })?;
        // Digests first: equal lengths, so the comparison's time says nothing about the key.
        let matches: bool = Sha256::digest(value.as_bytes())
            .ct_eq(&Sha256::digest(expected.expose().as_bytes()))
            .into();
        if matches {
            Ok(())
        } else {
            Err(invalid(shown, "the caller key is wrong"))
        }
    }
}

fn invalid(shown: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "caller_key_invalid",
        format!("{why}; send the configured key in the {shown} header"),
    )
    .with("header", shown)
}

/// A `Host` that is an IP literal or `localhost` (or absent): a DNS name other than `localhost`
/// means the request may come from a web page that rebound its own name to this address.
fn host_is_local(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(HOST) else {
        return true;
    };
    let Ok(authority) = host
        .to_str()
        .map_err(drop)
        .and_then(|h| h.parse::<http::uri::Authority>().map_err(drop))
    else {
        return false;
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn only_local_hosts_pass() {
        for ok in [
            "127.0.0.1:8790",
            "localhost",
            "LOCALHOST:1",
            "[::1]:8790",
            "10.0.0.2",
        ] {
            assert!(host_is_local(&headers(&[("host", ok)])), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8790",
            "localhost.evil.example",
            "a b",
        ] {
            assert!(!host_is_local(&headers(&[("host", bad)])), "{bad}");
        }
        assert!(host_is_local(&HeaderMap::new()));
    }
}
