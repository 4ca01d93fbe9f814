//! The local token API: `GET /v1/token/{profile}` and `POST /v1/token/{profile}/refresh`.
//!
//! Who may call the token endpoints is decided by [`CallerAccess`]; the probes answer everyone
//! (orchestrators call them without secrets, and they carry no token).

use crate::access::{self, CallerAccess};
use crate::metrics_names::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::header::{CACHE_CONTROL, HeaderValue};
use http::{HeaderMap, Uri};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tw_broker::{Broker, IssuedToken, Profile, TokenRequest};
use tw_core::{Clock, Error, TokenFingerprint};
use tw_http::{ApiError, ErrorCode, MetricsRender, Readiness};

/// Header alternative to `?min_ttl=`.
pub const MIN_TTL_HEADER: &str = "x-min-ttl";

#[derive(Clone)]
struct ApiState {
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
}

/// The token API, guarded by `access`, plus `/healthz`, `/readyz` (ready when every eager profile
/// holds a usable token) and `/metrics` (when `metrics` is given).
pub fn api_router(
    broker: Arc<Broker>,
    clock: Arc<dyn Clock>,
    metrics: Option<MetricsRender>,
    access: CallerAccess,
) -> Router {
    let state = ApiState {
        broker: broker.clone(),
        clock,
    };
    let token_routes = Router::new()
        .route("/v1/token/{profile}", get(get_token))
        .route(
            "/v1/token/{profile}/refresh",
            post(refresh_token).layer(DefaultBodyLimit::max(MAX_REFRESH_BODY_BYTES)),
        )
        .route_layer(middleware::from_fn_with_state(access, access::guard))
        .with_state(state);

    let ready_broker = broker.clone();
    let readiness: tw_http::ReadinessFn = Arc::new(move || readiness(&ready_broker));
    let metrics = metrics.map(|render| -> MetricsRender {
        Arc::new(move || {
            // Remaining-lifetime gauges are computed at scrape time.
            broker.update_gauges();
            render()
        })
    });
    token_routes
        .merge(tw_http::probes_router(readiness, metrics))
        .fallback(tw_http::not_found_fallback)
        .method_not_allowed_fallback(tw_http::method_not_allowed_fallback)
        .layer(middleware::from_fn(count_errors))
        .layer(tw_http::trace_layer())
}

fn readiness(broker: &Broker) -> Readiness {
    let profiles: serde_json::Map<String, serde_json::Value> = broker
        .profiles()
        .map(|p| {
            let s = p.status();
            let detail = json!({
                "eager": s.eager,
                "usable": s.usable,
                "consecutive_failures": s.consecutive_failures,
                "last_error": s.last_error.as_ref().map(|e| e.code()),
            });
            (s.name, detail)
        })
        .collect();
    Readiness {
        ready: broker.is_ready(),
        detail: json!({ "profiles": profiles }),
    }
}

async fn count_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        metrics::counter!(METRIC_API_ERRORS, "code" => *code).increment(1);
    }
    response
}

async fn get_token(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let profile = find_profile(&st.broker, &name)?;
    let min_ttl = requested_min_ttl(&uri, &headers)?;
    let served = profile.token(TokenRequest { min_ttl }).await?;
    metrics::counter!(METRIC_API_TOKENS, "profile" => name, "state" => served.freshness.as_str())
        .increment(1);
    Ok(token_response(&profile, &served.token, st.clock.as_ref()))
}

/// The largest refresh body read (a token and its JSON wrapping).
const MAX_REFRESH_BODY_BYTES: usize = 16 * 1024;

/// A new token; concurrent calls share one IdP request (see [`Profile::force_refresh`]).
///
/// The optional JSON body `{"rejected_token": "<the access token that was refused>"}` names the
/// token to replace: when the agent has replaced it already (another caller's refresh), the
/// current token comes back without an IdP request, however late the call arrives. An empty body
/// names the token current when the call arrives.
async fn refresh_token(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let profile = find_profile(&st.broker, &name)?;
    let body = body.map_err(|_| {
        Error::bad_request(
            "invalid_refresh_request",
            format!("the refresh body must be at most {MAX_REFRESH_BODY_BYTES} bytes"),
        )
    })?;
    let rejected = rejected_token(&body)?;
    let token = profile.force_refresh(rejected).await?;
    metrics::counter!(METRIC_API_TOKENS, "profile" => name, "state" => "fresh").increment(1);
    Ok(token_response(&profile, &token, st.clock.as_ref()))
}

/// The fingerprint of the token the refresh body names, if it names one.
fn rejected_token(body: &[u8]) -> Result<Option<TokenFingerprint>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    // The body carries a token: the message never echoes it.
    let invalid = || {
        Error::bad_request(
            "invalid_refresh_request",
            "the refresh body must be empty or a JSON object {\"rejected_token\": \"<the access token that was refused>\"}",
        )
    };
    let serde_json::Value::Object(fields) = serde_json::from_slice(body).map_err(|_| invalid())?
    else {
        return Err(invalid());
    };
    let mut rejected = None;
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("rejected_token", serde_json::Value::String(t)) => {
                // As copied from a header or a file: `Bearer ` and surrounding blanks are not
                // part of the token.
                let t = t.trim();
                let t = match t.split_once(char::is_whitespace) {
                    Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
                    _ if t.eq_ignore_ascii_case("bearer") => "",
                    _ => t,
                };
                if t.is_empty() || rejected.is_some() {
                    return Err(invalid());
                }
                rejected = Some(TokenFingerprint::of(t));
            }
            _ => return Err(invalid()),
        }
    }
    Ok(rejected)
}

fn find_profile(broker: &Broker, name: &str) -> Result<Arc<Profile>, Error> {
    broker.profile(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = broker.profiles().map(|p| p.name()).collect();
        Error::not_found(
            "profile_not_found",
            format!(
                "no profile named `{name}`; configured profiles: {}",
                known.join(", ")
            ),
        )
        .with("profile", name)
    })
}

fn token_response(profile: &Profile, token: &IssuedToken, clock: &dyn Clock) -> Response {
    let now = clock.now();
    let body = json!({
        "access_token": token.access_token.expose(),
        "token_type": token.token_type,
        "expires_in": token.expires_in(now).as_secs(),
        "expires_at": token.expires_at.as_secs(),
        "profile": profile.name(),
    });
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `?min_ttl=` wins over `X-Min-TTL`; both accept seconds (`30`) or a duration (`30s`, `5m`).
fn requested_min_ttl(uri: &Uri, headers: &HeaderMap) -> Result<Duration, Error> {
    let mut from_query = None;
    for (key, value) in url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "min_ttl" => from_query = Some(parse_min_ttl(&value)?),
            other => {
                return Err(Error::bad_request(
                    "unknown_parameter",
                    format!("unknown query parameter `{other}`; the only one is `min_ttl`"),
                ));
            }
        }
    }
    if let Some(d) = from_query {
        return Ok(d);
    }
    match headers.get(MIN_TTL_HEADER) {
        None => Ok(Duration::ZERO),
        Some(v) => parse_min_ttl(v.to_str().unwrap_or("\u{fffd}")),
    }
}

fn parse_min_ttl(raw: &str) -> Result<Duration, Error> {
    let raw = raw.trim();
    let parsed = if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        raw.parse::<u64>().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(raw).ok()
    };
    parsed.ok_or_else(|| {
        // Echo only a short prefix: this is caller input, keep log and response lines bounded.
        let shown: String = raw.chars().take(32).collect();
        Error::bad_request(
            "invalid_min_ttl",
            format!("min_ttl `{shown}` is not a duration; give seconds (30) or e.g. 30s, 5m"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn refresh_body_names_the_rejected_token_or_nothing() {
        for empty in ["", " \n", "{}"] {
            assert_eq!(
                rejected_token(empty.as_bytes()).expect("ok"),
                None,
                "{empty:?}"
            );
        }
        for named in [
            r#"{"rejected_token": "abc"}"#,
            r#"{"rejected_token": "abc\n"}"#,
            r#"{"rejected_token": "Bearer abc"}"#,
            r#"{"rejected_token": " bearer  abc "}"#,
        ] {
            assert_eq!(
                rejected_token(named.as_bytes()).expect(named),
                Some(TokenFingerprint::of("abc")),
                "{named}"
            );
        }
        for bad in [
            "abc",
            r#"{"rejected_token": ""}"#,
            r#"{"rejected_token": "Bearer "}"#,
            r#"{"rejected_token": null}"#,
            r#"{"token": "abc"}"#,
        ] {
            let e = rejected_token(bad.as_bytes()).expect_err(bad);
            assert_eq!(e.code(), "invalid_refresh_request");
            assert!(!e.message().contains("abc"), "echoed: {}", e.message());
        }
    }

    #[test]
    fn min_ttl_from_query_or_header() {
        let none = HeaderMap::new();
        let q = |s: &str| requested_min_ttl(&s.parse().expect("uri"), &none);
        assert_eq!(q("/v1/token/a").expect("ok"), Duration::ZERO);
        assert_eq!(
            q("/v1/token/a?min_ttl=30s").expect("ok"),
            Duration::from_secs(30)
        );
        assert_eq!(
            q("/v1/token/a?min_ttl=90").expect("ok"),
            Duration::from_secs(90)
        );
        assert_eq!(
            q("/v1/token/a?min_ttl=5m").expect("ok"),
            Duration::from_secs(300)
        );
        let e = q("/v1/token/a?min_ttl=soon").expect_err("bad");
        assert_eq!(e.code(), "invalid_min_ttl");
        let e = q("/v1/token/a?min-ttl=30").expect_err("typo");
        assert_eq!(e.code(), "unknown_parameter");

        let uri: Uri = "/v1/token/a".parse().expect("uri");
        let h = headers(&[("x-min-ttl", "30")]);
        assert_eq!(
            requested_min_ttl(&uri, &h).expect("ok"),
            Duration::from_secs(30)
        );
        let h = headers(&[("x-min-ttl", "-3")]);
        assert_eq!(
            requested_min_ttl(&uri, &h).expect_err("neg").code(),
            "invalid_min_ttl"
        );
    }
}
