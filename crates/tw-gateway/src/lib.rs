//! `tokenwarden gateway`: verifies bearer tokens in front of an API.
//!
//! Two ways to put it in front of an API, on one listener:
//!
//! - **Reverse proxy** (`gateway.routes`): route by host and longest path prefix (whole
//!   segments) → exempt path? → bearer token from `Authorization` → [`tw_verify::Verifier`] →
//!   [`Decision`] → forward: incoming identity headers removed, the verified identity added, the
//!   caller's `Authorization` passed on unchanged, hop-by-hop fields dropped, bodies streamed
//!   (shared forwarding code: [`tw_http::forward`]).
//! - **Forward auth** (`forward_auth_path`, default `/auth` and everything under it): nginx
//!   `auth_request`, Traefik `forwardAuth` and Envoy `ext_authz` (HTTP service) ask about a
//!   request ([`original`] reads which one); the answer is 200 with the identity headers, or the
//!   refusal.
//!
//! Refusals follow RFC 6750 ([`refusal`], over [`tw_http::bearer`]: the one bearer parser and
//! set of refusals, shared with the admin API and the vault): 401 with a bare `Bearer realm="tokenwarden"` challenge
//! without a token, 400 `invalid_request` for a malformed `Authorization`, 401 `invalid_token`
//! naming the failed check, 503 + `Retry-After` when keys or introspection are unavailable, 403
//! `insufficient_scope` when the [`Decision`] denies (the JSON code says why:
//! `insufficient_scope`, `unknown_principal`, `no_matching_rule`, ...), 429 + `Retry-After` when
//! it rate-limits. With `[gateway.authz]`, [`tw_authz::Authz`] decides and the granted
//! permissions go upstream in `X-Auth-Permissions`. Every error has a JSON body with a stable
//! code. Tokens never reach logs (fingerprints only) and query strings are never recorded.
//!
//! `/healthz`, `/readyz` (every issuer's keys loaded; per-issuer detail) and `/metrics` are served
//! on the same listener and are not subject to routes.

mod decision;
mod gateway;
pub mod identity;
mod metrics_names;
pub mod original;
pub mod paths;
pub mod refusal;
pub mod settings;

pub use decision::{AllowAll, Allowed, Decision, DecisionRequest, Denied, Mode, Verdict};
pub use gateway::{BoundGateway, Gateway, Outcome};
pub use metrics_names::*;
pub use refusal::{REALM, Refusal};
pub use settings::{
    ConnectionsConfig, GATEWAY_PROBE_PATHS, GatewayRouteConfig, GatewaySettings, IdentityHeaders,
    PathsConfig, check_gateway,
};
