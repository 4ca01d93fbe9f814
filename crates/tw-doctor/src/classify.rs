//! Turning network errors and IdP answers into a stable cause with an explanation and a fix.

use crate::report::Step;
use tw_broker::source::CustomLoginFailure;
use tw_config::AuthMethod;
use tw_core::secret_ref::SECRET_UNAVAILABLE;
use tw_core::{Error, ErrorKind, NetworkClass};
use tw_idp::codes;

/// What a network failure (its class, a typed fact of the error) means for `host`, and how to
/// fix it.
pub fn explain_network(class: NetworkClass, step: Step, host: &str) -> Step {
    match class {
        NetworkClass::ConnectionRefused => step
            .detail(format!("nothing accepts connections at {host}: the server is down, not started yet, or listening on another port"))
            .fix(format!("check that the service runs and listens on {host} (docker compose ps / systemctl status); check the port in the URL"))
            .fix("in a container, `localhost` is the container itself: use the service name (e.g. http://keycloak:8080)"),
        NetworkClass::Dns => step
            .detail(format!("the host name of {host} does not resolve"))
            .fix("check the spelling of the host name; inside containers use the compose service name; check /etc/resolv.conf or the DNS server"),
        NetworkClass::Tls => step
            .detail(format!("the TLS handshake with {host} failed: https:// to a plain-HTTP port, an untrusted or expired certificate, or a name that is not in the certificate"))
            .fix("use http:// if the server speaks plain HTTP (Keycloak's 8080), https:// only on its TLS port (8443)")
            .fix("for a private CA, add it to the system trust store (update-ca-certificates)"),
        NetworkClass::Timeout => step
            .detail(format!("{host} accepted no answer within the request timeout"))
            .fix("check firewalls and proxies between here and the server, and whether it is overloaded; raise `timing.request_timeout` if it is merely slow"),
        NetworkClass::Reset => step
            .detail(format!("{host} closed the connection without an answer"))
            .fix("check the server's logs; a proxy or load balancer in between may be refusing the connection"),
        NetworkClass::Other => step
            .fix(format!("check that {host} is reachable from this machine (curl -v)")),
    }
}

/// `scheme://host:port` of a URL, for messages.
pub fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.to_string(),
    }
}

/// What the IdP said (`error: error_description`), from the error's typed OAuth fact; the
/// whole message when the refusal came without an OAuth error body.
pub fn oauth_description(e: &Error) -> String {
    match e.oauth_error() {
        Some(o) => match &o.description {
            Some(description) => format!("{}: {description}", o.error),
            None => o.error.clone(),
        },
        None => e.message().to_owned(),
    }
}

/// What the answer to a client's token request tells about its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// The IdP said which (its description names it).
    WrongSecret,
    Disabled,
    ServiceAccountDisabled,
    InvalidAssertion,
    /// `invalid_client` with nothing more: unknown client, wrong secret, or (Keycloak) disabled.
    Ambiguous,
}

/// Classifies a permanent client-authentication refusal from its code and description.
/// `None` when the refusal is about something else (scope, grant...).
pub fn credentials_of(e: &Error, method: AuthMethod) -> Option<Credentials> {
    let d = e
        .oauth_error()
        .and_then(|o| o.description.as_deref())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let service_account = d.contains("service account")
        || d.contains("grant type is not allowed")
        || d.contains("not allowed to use this grant");
    match e.code() {
        codes::IDP_UNAUTHORIZED_CLIENT | codes::IDP_INVALID_REQUEST if service_account => {
            Some(Credentials::ServiceAccountDisabled)
        }
        codes::IDP_INVALID_CLIENT | codes::IDP_UNAUTHORIZED_CLIENT => {
            Some(if d.contains("disabled") {
                Credentials::Disabled
            } else if method == AuthMethod::PrivateKeyJwt {
                Credentials::InvalidAssertion
            } else if d.contains("invalid client secret") {
                Credentials::WrongSecret
            } else if e.code() == codes::IDP_UNAUTHORIZED_CLIENT && !d.contains("credentials") {
                // Keycloak's unauthorized_client without a credentials message: the client may
                // not use this grant.
                Credentials::ServiceAccountDisabled
            } else {
                Credentials::Ambiguous
            })
        }
        _ => None,
    }
}

/// The cause of a failed token fetch that is not about the client's credentials.
pub fn token_failure_cause(e: &Error) -> &'static str {
    // A custom login's failures keep the API's own code.
    if let Some(failure) = CustomLoginFailure::of(e) {
        return failure.code();
    }
    // A network failure: its class.
    if let Some(class) = e.network() {
        return class.as_str();
    }
    match (e.kind(), e.code()) {
        (_, SECRET_UNAVAILABLE) => SECRET_UNAVAILABLE,
        (ErrorKind::Config, _) => tw_core::CONFIG_INVALID,
        (_, codes::IDP_INVALID_SCOPE) => "invalid_scope",
        (_, codes::IDP_INVALID_GRANT) => "invalid_grant",
        (_, codes::IDP_UNSUPPORTED_GRANT_TYPE) => "unsupported_grant_type",
        (_, codes::IDP_REDIRECT) => "token_endpoint_redirect",
        (_, codes::IDP_INVALID_REQUEST) => "invalid_request",
        (_, codes::IDP_MALFORMED_RESPONSE | codes::IDP_ANSWER_TOO_LARGE) => {
            "token_response_invalid"
        }
        (_, codes::IDP_DISCOVERY_FAILED) => "discovery_http_status",
        (_, codes::IDP_DISCOVERY_MALFORMED) => "discovery_invalid",
        (_, codes::IDP_ISSUER_MISMATCH) => "issuer_mismatch",
        (_, codes::IDP_TIMEOUT) => "timeout",
        (_, codes::IDP_UNREACHABLE) => NetworkClass::Other.as_str(),
        (_, codes::IDP_UNAVAILABLE) if e.upstream_status() == Some(429) => "rate_limited",
        (_, codes::IDP_UNAVAILABLE) => "idp_5xx",
        _ => "token_request_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keycloak_answers_are_told_apart() {
        let err = |code, desc: &str| {
            Error::new(ErrorKind::IdpRejected, code, "hint (HTTP 401, …)")
                .with_oauth_error("invalid_client", Some(desc.to_owned()))
                .with(tw_idp::OAUTH_ERROR, "invalid_client")
                .with(tw_idp::OAUTH_ERROR_DESCRIPTION, desc)
        };
        let basic = AuthMethod::ClientSecretBasic;
        for (code, description, method, want) in [
            (
                "idp_invalid_client",
                "Invalid client or Invalid client credentials",
                basic,
                Some(Credentials::Ambiguous),
            ),
            (
                "idp_unauthorized_client",
                "Invalid client secret",
                basic,
                Some(Credentials::WrongSecret),
            ),
            (
                "idp_unauthorized_client",
                "Client not enabled to retrieve service account",
                basic,
                Some(Credentials::ServiceAccountDisabled),
            ),
            (
                "idp_invalid_client",
                "Invalid client credentials",
                AuthMethod::PrivateKeyJwt,
                Some(Credentials::InvalidAssertion),
            ),
            (
                "idp_invalid_client",
                "Client disabled",
                basic,
                Some(Credentials::Disabled),
            ),
            ("idp_invalid_scope", "Invalid scopes: x", basic, None),
        ] {
            assert_eq!(
                credentials_of(&err(code, description), method),
                want,
                "{description}"
            );
        }
    }

    #[test]
    fn the_description_comes_from_the_idps_typed_answer() {
        let e = tw_idp::classify_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(
            oauth_description(&e),
            "invalid_client: client authentication failed"
        );
        // A message that merely looks like the broker's is not read for the IdP's words.
        let look_alike = Error::new(
            ErrorKind::IdpRejected,
            "idp_invalid_client",
            "hint (HTTP 401, invalid_client: Client disabled)",
        );
        assert_eq!(
            credentials_of(&look_alike, AuthMethod::ClientSecretBasic),
            Some(Credentials::Ambiguous)
        );
    }
}
