//! Every conversation tokenwarden has with an OAuth2/OIDC identity provider.
//!
//! - [`http`]: the one HTTP client factory ([`HttpSettings`] → [`IdpHttp`]): trust roots, a
//!   client identity slot for mTLS, no redirects, timeouts, and a cap on every answer's body;
//!   network failures classified ([`tw_core::NetworkClass`]).
//! - [`discovery`]: the discovery document, its checks, and [`DiscoveryCache`] (one per issuer,
//!   single-flight, failures not remembered).
//! - [`auth`]: [`ClientAuthentication`], the one seam for client authentication
//!   (`client_secret_basic`, `client_secret_post`, `private_key_jwt` with RFC 7523 assertions,
//!   `none`; mTLS and DPoP are further implementations).
//! - [`token`]: the token endpoint with a [`Grant`], introspection, revocation, JWKS fetch.
//! - [`classify`]: answers into permanent (`IdpRejected`) or transient (`IdpUnavailable`) errors
//!   with the status, `Retry-After` and the IdP's OAuth error as typed facts.
//! - [`codes`]: the stable error codes.
//!
//! Nothing here logs or echoes a request or response body: they carry secrets.

pub mod auth;
pub mod classify;
pub mod codes;
pub mod discovery;
pub mod http;
pub mod token;

pub use auth::{
    AssertionKey, AuthMethod, ClientAuthentication, ClientSecretBasic, ClientSecretPost,
    NoClientAuth, PrivateKeyJwt, SigningAlg,
};
pub use classify::{
    OAUTH_ERROR, OAUTH_ERROR_DESCRIPTION, classify_token_response, failure_label,
    is_transient_status, lifetime_from_json, parse_retry_after,
};
pub use discovery::{Discovery, DiscoveryCache, IssuerMatch};
pub use http::{Answer, HttpSettings, IdpHttp, MAX_ANSWER_BYTES, Overflow};
pub use token::{Call, Grant, TokenAnswer, TokenResponse};
