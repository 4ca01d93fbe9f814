//! The stable error codes of IdP calls (part of the public API: clients, dashboards and `doctor`
//! key on them). Compare [`tw_core::Error::code`] with these, never with literals.

/// The IdP does not accept the client's credentials (`invalid_client`).
pub const IDP_INVALID_CLIENT: &str = "idp_invalid_client";
/// The client may not use this grant (`unauthorized_client`).
pub const IDP_UNAUTHORIZED_CLIENT: &str = "idp_unauthorized_client";
/// The grant (refresh token, code) was refused (`invalid_grant`).
pub const IDP_INVALID_GRANT: &str = "idp_invalid_grant";
/// The IdP does not support the grant (`unsupported_grant_type`).
pub const IDP_UNSUPPORTED_GRANT_TYPE: &str = "idp_unsupported_grant_type";
/// A requested scope is unknown or not allowed (`invalid_scope`).
pub const IDP_INVALID_SCOPE: &str = "idp_invalid_scope";
/// The IdP found the request malformed (`invalid_request`).
pub const IDP_INVALID_REQUEST: &str = "idp_invalid_request";
/// Any other permanent refusal.
pub const IDP_REJECTED: &str = "idp_rejected";
/// An endpoint answered with a redirect (never followed): the URL is probably wrong.
pub const IDP_REDIRECT: &str = "idp_redirect";
/// 408, 429 or 5xx: transient.
pub const IDP_UNAVAILABLE: &str = "idp_unavailable";
/// A success status whose body is not a usable answer (garbled): transient.
pub const IDP_MALFORMED_RESPONSE: &str = "idp_malformed_response";
/// An answer larger than the client's cap: not read further, transient.
pub const IDP_ANSWER_TOO_LARGE: &str = "idp_answer_too_large";
/// A JSON document of the wrong content (a JWKS without usable keys, ...).
pub const IDP_INVALID_DOCUMENT: &str = "idp_invalid_document";
/// Discovery answered a status other than 200.
pub const IDP_DISCOVERY_FAILED: &str = "idp_discovery_failed";
/// The discovery document is not one (not JSON, wrong shape, a non-http(s) endpoint).
pub const IDP_DISCOVERY_MALFORMED: &str = "idp_discovery_malformed";
/// The discovery document names another issuer.
pub const IDP_ISSUER_MISMATCH: &str = "idp_issuer_mismatch";
/// The discovery document lacks an endpoint this call needs.
pub const IDP_ENDPOINT_MISSING: &str = "idp_endpoint_missing";
/// A fetch of a document (JWKS) answered a status other than 200.
pub const IDP_HTTP_STATUS: &str = "idp_http_status";
/// No answer in time.
pub const IDP_TIMEOUT: &str = "idp_timeout";
/// No answer: connection refused, DNS, TLS, reset...
pub const IDP_UNREACHABLE: &str = "idp_unreachable";
/// The HTTP client could not be built (a bad CA certificate or client identity, ...).
pub const HTTP_CLIENT_INIT: &str = "http_client_init";
/// A trust root or client identity given to the client is not usable PEM.
pub const TLS_MATERIAL_INVALID: &str = "tls_material_invalid";
/// The `private_key_jwt` key is not a usable PEM private key.
pub const PRIVATE_KEY_INVALID: &str = "private_key_invalid";
/// A client assertion could not be signed.
pub const ASSERTION_SIGNING_FAILED: &str = "assertion_signing_failed";
